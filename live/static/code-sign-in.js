// The phone-code step of signing in, as the viewer page and the leader page both show it: the phone form
// asks for a code (`path` answers 202, with `dev_code` from the dev SMS provider), the send button counts
// down until another code may be asked for (the server's limit, or its Retry-After), and a new number may
// have its code at once. `keys` names the page's catalogue entries for the button and the dev code.
import { api, ApiError, describe } from "./api.js";
import { $, onSubmit, setText, show } from "./dom.js";
import { t } from "./i18n.js";

const RESEND_SECONDS = 60;

export function codeRequest({ path, keys }) {
  let resendTimer = null;
  const button = $("#send-code");

  function holdResend(seconds) {
    clearInterval(resendTimer);
    let left = Math.max(1, Math.ceil(seconds));
    const tick = () => {
      button.disabled = left > 0;
      setText(button, left > 0 ? t(keys.resend_in, { n: left }) : t(keys.send_again));
      if (left-- <= 0) clearInterval(resendTimer);
    };
    tick();
    resendTimer = setInterval(tick, 1000);
  }

  // The wait is per number (the server's limit is): another number may have its code at once.
  $("#code-form input[name=phone]").addEventListener("input", () => {
    clearInterval(resendTimer);
    button.disabled = false;
    setText(button, t(keys.send_code));
  });

  onSubmit($("#code-form"), async ({ phone }) => {
    setText($("#signin-error"), "");
    hideDevCode();
    try {
      const sent = await api(path(), { method: "POST", body: { phone } });
      show($("#signin-form"));
      if (sent.dev_code) {
        setText($("#dev-code"), t(keys.dev_code, { code: sent.dev_code }));
        show($("#dev-code"));
      }
      $("#signin-form input[name=code]").focus();
      setTimeout(() => holdResend(RESEND_SECONDS)); // after onSubmit re-enables the form
    } catch (error) {
      if (error instanceof ApiError && error.retryAfter && error.code === "rate_limited") {
        setTimeout(() => holdResend(error.retryAfter));
      }
      throw error;
    }
  }, (error) => setText($("#signin-error"), describe(error)));
}

/** A shown dev code is gone with its text (a later read of the element must not find the old code). */
export function hideDevCode() {
  setText($("#dev-code"), "");
  show($("#dev-code"), false);
}
