// Sharing inside WeChat: the JS-SDK's share set-up (wx.config, then updateAppMessageShareData and
// updateTimelineShareData), so a link passed on in WeChat unfolds with the show's title, host and cover.
// The server loads the SDK (jweixin, window.wx) only inside WeChat and only when an official account's
// AppID is configured; everywhere else these do nothing. The signature is the server's
// (GET /api/rooms/{room}/wechat/share-config), for this page's address as it was opened: iOS WeChat signs
// the address the page was entered at, so the set-up runs before the page tidies its address bar.

import { api } from "./api.js";
import { pageConfig, t } from "./i18n.js";

let share = null; // {title, desc, imgUrl} once configured
let link = null; // the link to share: the page's, then the viewer's own once they have joined
let ready = false;

function apply() {
  if (!ready || !share || !link) return;
  window.wx.updateAppMessageShareData({ ...share, link, success() {} });
  window.wx.updateTimelineShareData({ title: share.title, link, imgUrl: share.imgUrl, success() {} });
}

export async function setUpSharing(roomId, preview, { link: pageLink }) {
  if (!pageConfig().wechat_share || !window.wx) return;
  const url = location.href.split("#")[0];
  link = link || new URL(pageLink, location.href).href;
  const signed = await api(`/api/rooms/${encodeURIComponent(roomId)}/wechat/share-config?${new URLSearchParams({ url })}`);
  share = {
    title: preview.title,
    desc: t("share.wechat_desc", { host: preview.host_name, status: t(`room.status.${preview.status}`) }),
    imgUrl: preview.cover_url || new URL("/static/og-default.png", location.href).href,
  };
  window.wx.config({
    debug: false,
    appId: signed.appId,
    timestamp: signed.timestamp,
    nonceStr: signed.nonceStr,
    signature: signed.signature,
    jsApiList: ["updateAppMessageShareData", "updateTimelineShareData"],
  });
  window.wx.ready(() => {
    ready = true;
    apply();
  });
}

/** Share the viewer's own link from now on (once they have joined: friends count as theirs). */
export function updateSharing({ link: ownLink }) {
  if (!ownLink) return;
  link = new URL(ownLink, location.href).href;
  apply();
}
