// Message text split into plain runs and http(s) links, for rendering as
// React text nodes and anchors: the text is never parsed as HTML, and only
// http: and https: addresses become links.

export type TextPart = { type: 'text'; text: string } | { type: 'link'; text: string; href: string };

// A URL runs to the next whitespace or angle bracket; closing punctuation is trimmed below.
const URL_PATTERN = /\bhttps?:\/\/[^\s<>"]+/gi;
const TRAILING = /[.,;:!?'")\]}]+$/;

function safeHref(raw: string): string | null {
  try {
    const url = new URL(raw);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
    return url.href;
  } catch {
    return null;
  }
}

export function splitLinks(text: string): TextPart[] {
  const parts: TextPart[] = [];
  let last = 0;
  for (const match of text.matchAll(URL_PATTERN)) {
    const start = match.index ?? 0;
    let candidate = match[0];
    // Keep a closing bracket that belongs to the URL (…/Foo_(bar)), drop other trailing punctuation.
    const trailing = candidate.match(TRAILING)?.[0] ?? '';
    if (trailing) {
      const opens = (candidate.match(/\(/g) ?? []).length;
      const closes = (candidate.match(/\)/g) ?? []).length;
      const balanced = trailing.startsWith(')') && opens >= closes;
      if (!balanced) candidate = candidate.slice(0, candidate.length - trailing.length);
    }
    const href = safeHref(candidate);
    if (!href) continue;
    if (start > last) parts.push({ type: 'text', text: text.slice(last, start) });
    parts.push({ type: 'link', text: candidate, href });
    last = start + candidate.length;
  }
  if (last < text.length) parts.push({ type: 'text', text: text.slice(last) });
  return parts;
}
