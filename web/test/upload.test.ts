// Upload state in the message box: progress only forward and within the
// file's size, done with the server's attachment, refused with a reason
// from the server's code, removal and the limit of files per message.

import { describe, expect, it } from 'vitest';
import { anyUploading, describeUploadError, percent, readyIds, roomFor, uploadsReducer, type UploadItem } from '../src/lib/upload';
import type { Attachment } from '../src/lib/types';

const attachment = (id: string): Attachment => ({ id, sessionId: 's1', name: `${id}.png`, size: 1000, contentType: 'image/png', width: 10, height: 10, createdAt: new Date(0).toISOString() });

describe('uploadsReducer', () => {
  it('runs an upload from 0 to 100 percent, never backwards nor past its size', () => {
    let items: UploadItem[] = [];
    items = uploadsReducer(items, { type: 'start', key: 'u1', name: 'a.png', size: 1000, contentType: 'image/png' });
    expect(percent(items[0]!)).toBe(0);
    expect(anyUploading(items)).toBe(true);
    items = uploadsReducer(items, { type: 'progress', key: 'u1', loaded: 420 });
    expect(percent(items[0]!)).toBe(42);
    items = uploadsReducer(items, { type: 'progress', key: 'u1', loaded: 100 });
    expect(percent(items[0]!)).toBe(42);
    items = uploadsReducer(items, { type: 'progress', key: 'u1', loaded: 5000 });
    expect(items[0]!.loaded).toBe(1000);
    items = uploadsReducer(items, { type: 'done', key: 'u1', attachment: attachment('a1') });
    expect(percent(items[0]!)).toBe(100);
    expect(anyUploading(items)).toBe(false);
    expect(readyIds(items)).toEqual(['a1']);
  });

  it('keeps a refusal with its reason, sends only finished files, and forgets removed ones', () => {
    let items: UploadItem[] = [];
    items = uploadsReducer(items, { type: 'start', key: 'u1', name: 'big.bin', size: 10, contentType: 'application/octet-stream' });
    items = uploadsReducer(items, { type: 'start', key: 'u2', name: 'b.png', size: 10, contentType: 'image/png' });
    items = uploadsReducer(items, { type: 'failed', key: 'u1', error: 'Too large' });
    // A late progress or success of a refused upload changes nothing.
    items = uploadsReducer(items, { type: 'done', key: 'u1', attachment: attachment('x') });
    expect(items[0]).toMatchObject({ phase: 'failed', error: 'Too large', attachment: null });
    items = uploadsReducer(items, { type: 'done', key: 'u2', attachment: attachment('b') });
    expect(readyIds(items)).toEqual(['b']);
    expect(roomFor(items)).toBe(9);
    items = uploadsReducer(items, { type: 'remove', key: 'u2' });
    expect(readyIds(items)).toEqual([]);
    expect(uploadsReducer(items, { type: 'clear' })).toEqual([]);
  });

  it('says why the server refused a file', () => {
    expect(describeUploadError({ code: 'payload_too_large', message: 'over 10 MiB' }, 413)).toMatch(/^Too large/);
    expect(describeUploadError({ code: 'invalid_payload', message: 'type application/zip is not accepted' }, 400)).toBe('This file is not accepted: type application/zip is not accepted');
    expect(describeUploadError({ code: 'network', message: '' }, 0)).toMatch(/cannot be reached/);
    expect(describeUploadError({ code: 'forbidden', message: 'not yours' }, 403)).toBe('The upload failed: not yours');
  });
});
