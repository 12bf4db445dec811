// Links in message text: only http(s) addresses become links, everything
// else (markup, javascript: addresses) stays text, and the rendered HTML
// carries the text escaped.

import { createElement } from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { describe, expect, it } from 'vitest';
import { MessageText } from '../src/components/MessageList';
import { splitLinks } from '../src/lib/links';

describe('splitLinks', () => {
  it('splits http and https addresses out of the text', () => {
    expect(splitLinks('See https://example.com/a?b=1 and http://x.org now')).toEqual([
      { type: 'text', text: 'See ' },
      { type: 'link', text: 'https://example.com/a?b=1', href: 'https://example.com/a?b=1' },
      { type: 'text', text: ' and ' },
      { type: 'link', text: 'http://x.org', href: 'http://x.org/' },
      { type: 'text', text: ' now' },
    ]);
  });

  it('leaves closing punctuation out of a link, but keeps a balanced bracket', () => {
    expect(splitLinks('Go to https://example.com/help.')).toEqual([
      { type: 'text', text: 'Go to ' },
      { type: 'link', text: 'https://example.com/help', href: 'https://example.com/help' },
      { type: 'text', text: '.' },
    ]);
    expect(splitLinks('(https://example.com/x)')).toEqual([
      { type: 'text', text: '(' },
      { type: 'link', text: 'https://example.com/x', href: 'https://example.com/x' },
      { type: 'text', text: ')' },
    ]);
    expect(splitLinks('https://en.wikipedia.org/wiki/Foo_(bar)')[0]).toMatchObject({ type: 'link', text: 'https://en.wikipedia.org/wiki/Foo_(bar)' });
  });

  it('keeps javascript:, data: and markup as plain text', () => {
    for (const text of ['javascript:alert(1)', 'data:text/html,<b>x</b>', '<script>alert(1)</script>', '<a href="javascript:alert(1)">x</a>', 'JaVaScRiPt:alert(1)']) {
      expect(splitLinks(text)).toEqual([{ type: 'text', text }]);
    }
  });

  it('does not let a link swallow markup next to it', () => {
    const parts = splitLinks('https://ok.example/<script>alert(1)</script>');
    expect(parts[0]).toEqual({ type: 'link', text: 'https://ok.example/', href: 'https://ok.example/' });
    expect(parts.slice(1).every((p) => p.type === 'text')).toBe(true);
    expect(parts.map((p) => p.text).join('')).toBe('https://ok.example/<script>alert(1)</script>');
  });

  it('returns the whole text when there is no link, and nothing for an empty one', () => {
    expect(splitLinks('no links here')).toEqual([{ type: 'text', text: 'no links here' }]);
    expect(splitLinks('')).toEqual([]);
  });
});

describe('MessageText', () => {
  const html = (text: string) => renderToStaticMarkup(createElement(MessageText, { text }));

  it('renders links as anchors opening elsewhere without the opener', () => {
    expect(html('see https://example.com/x')).toBe('see <a href="https://example.com/x" target="_blank" rel="noopener noreferrer nofollow">https://example.com/x</a>');
  });

  it('escapes markup instead of rendering it', () => {
    const out = html('<script>alert(1)</script> <img src=x onerror=alert(1)>');
    expect(out).not.toContain('<script');
    expect(out).not.toContain('<img');
    expect(out).toBe('&lt;script&gt;alert(1)&lt;/script&gt; &lt;img src=x onerror=alert(1)&gt;');
  });

  it('never makes a javascript: link', () => {
    const out = html('click javascript:alert(document.cookie) or http://javascript:alert(1)');
    expect(out).not.toMatch(/href="javascript:/i);
    expect(out).toContain('javascript:alert(document.cookie)');
  });
});
