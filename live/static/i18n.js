// The pages' words: one catalogue per language (i18n/zh-CN.json, i18n/en.json), Simplified Chinese first.
// The server picks the language from Accept-Language and says so in the page's config (a <meta>); a choice
// made with the page's language switch is remembered in localStorage and wins. The markup carries keys
// (data-i18n="key" for an element's text, data-i18n-ATTR="key" for its attribute ATTR); scripts call
// t("key", {name: value}) for the text with its {name} placeholders filled.

const STORE = "livecart.lang";
const config = readConfig();

/** The page's configuration, as the server rendered it. */
export function pageConfig() {
  return config;
}

function readConfig() {
  try {
    return JSON.parse(document.querySelector('meta[name="livecart-config"]').content);
  } catch {
    return {};
  }
}

export const LANGUAGES = Array.isArray(config.languages) && config.languages.length ? config.languages : ["zh-CN", "en"];

function stored() {
  try {
    return localStorage.getItem(STORE);
  } catch {
    return null;
  }
}

/** The language of this page: the one chosen on the page, else the server's choice, else the default. */
export const lang = [stored(), config.lang].find((l) => LANGUAGES.includes(l)) || LANGUAGES[0];
document.documentElement.lang = lang;

async function load(language) {
  try {
    const response = await fetch(`/static/i18n/${language}.json`);
    if (response.ok) return await response.json();
  } catch {
    // offline: the keys show instead of the words, the page still works
  }
  return {};
}

const words = await load(lang);

export function has(key) {
  return Object.hasOwn(words, key);
}

/** The text of `key` in the page's language, its {name} placeholders filled from `values`. */
export function t(key, values = {}) {
  const text = has(key) ? words[key] : key;
  return text.replace(/\{(\w+)\}/g, (match, name) => (Object.hasOwn(values, name) ? String(values[name]) : match));
}

/** Fill `node` with the text of `key` where a placeholder may be a node (`{amount}` → <strong>…</strong>). */
export function fillT(node, key, values = {}) {
  const text = has(key) ? words[key] : key;
  const parts = text.split(/(\{\w+\})/).filter(Boolean).map((part) => {
    const name = /^\{(\w+)\}$/.exec(part)?.[1];
    if (!name || !Object.hasOwn(values, name)) return part;
    const value = values[name];
    return value instanceof Node ? value : String(value);
  });
  node.replaceChildren(...parts);
}

/** Translate the markup under `root`: data-i18n (text) and data-i18n-ATTR (attribute ATTR). */
export function translate(root = document) {
  for (const node of root.querySelectorAll("*")) {
    for (const { name, value } of Array.from(node.attributes)) {
      if (name === "data-i18n") node.textContent = t(value);
      else if (name.startsWith("data-i18n-")) node.setAttribute(name.slice("data-i18n-".length), t(value));
    }
  }
}

/** "45 s" or "3 min": how long to wait, for a Retry-After in seconds. */
export function waitText(seconds) {
  const s = Math.max(1, Math.ceil(Number(seconds) || 1));
  return s < 60 ? t("time.seconds", { n: s }) : t("time.minutes", { n: Math.ceil(s / 60) });
}

/** The language switch: a <select> of the languages, each named in itself; a change reloads the page. */
export function languageSwitch(select) {
  select.replaceChildren(
    ...LANGUAGES.map((l) => {
      const option = document.createElement("option");
      option.value = l;
      option.textContent = t(`lang.${l}`);
      option.selected = l === lang;
      return option;
    }),
  );
  select.addEventListener("change", () => {
    try {
      localStorage.setItem(STORE, select.value);
    } catch {
      return;
    }
    location.reload();
  });
}

translate();
