// Files attached in the message box: each upload's state (progress,
// done with the server's Attachment, refused with the server's reason,
// cancelled), the pure reducer over them, and the request itself over
// XMLHttpRequest, whose upload reports progress (fetch does not).

import type { Attachment, ChatErrorBody } from './types';
import { MAX_ATTACHMENTS } from './types';

export type UploadPhase = 'uploading' | 'done' | 'failed';

export interface UploadItem {
  /** Local id of this upload (not the server's). */
  key: string;
  name: string;
  size: number;
  contentType: string;
  phase: UploadPhase;
  /** Bytes sent so far. */
  loaded: number;
  attachment: Attachment | null;
  error: string | null;
}

export type UploadAction =
  | { type: 'start'; key: string; name: string; size: number; contentType: string }
  | { type: 'progress'; key: string; loaded: number }
  | { type: 'done'; key: string; attachment: Attachment }
  | { type: 'failed'; key: string; error: string }
  | { type: 'remove'; key: string }
  | { type: 'clear' };

export function uploadsReducer(items: UploadItem[], action: UploadAction): UploadItem[] {
  switch (action.type) {
    case 'start':
      if (items.some((i) => i.key === action.key)) return items;
      return [...items, { key: action.key, name: action.name, size: action.size, contentType: action.contentType, phase: 'uploading', loaded: 0, attachment: null, error: null }];
    case 'progress':
      return items.map((i) => (i.key === action.key && i.phase === 'uploading' ? { ...i, loaded: Math.min(Math.max(i.loaded, action.loaded), i.size) } : i));
    case 'done':
      return items.map((i) => (i.key === action.key && i.phase === 'uploading' ? { ...i, phase: 'done', loaded: i.size, attachment: action.attachment } : i));
    case 'failed':
      return items.map((i) => (i.key === action.key && i.phase === 'uploading' ? { ...i, phase: 'failed', error: action.error } : i));
    case 'remove':
      return items.filter((i) => i.key !== action.key);
    case 'clear':
      return [];
  }
}

/** Whole percent sent, 0..100 (an empty file counts as sent once done). */
export function percent(item: UploadItem): number {
  if (item.phase === 'done') return 100;
  if (item.size <= 0) return 0;
  return Math.floor((item.loaded / item.size) * 100);
}

/** Ids to send with the message: the finished uploads, in the order they were added. */
export function readyIds(items: readonly UploadItem[]): string[] {
  return items.filter((i) => i.phase === 'done' && i.attachment).map((i) => i.attachment!.id);
}

export function anyUploading(items: readonly UploadItem[]): boolean {
  return items.some((i) => i.phase === 'uploading');
}

/** Room for more files on this message. */
export function roomFor(items: readonly UploadItem[]): number {
  return Math.max(0, MAX_ATTACHMENTS - items.filter((i) => i.phase !== 'failed').length);
}

/** What the user reads when the server refuses a file. */
export function describeUploadError(error: ChatErrorBody, status: number): string {
  if (error.code === 'payload_too_large' || status === 413) return `Too large: ${error.message || 'the file is over the size limit.'}`;
  // The server refuses a type it does not take (or a bad name) as invalid_payload, with its reason.
  if (error.code === 'invalid_payload' || error.code === 'unsupported_media_type' || status === 415) return `This file is not accepted: ${error.message || 'its type or name is refused.'}`;
  if (error.code === 'session_closed') return 'The chat is closed: no more files can be sent.';
  if (error.code === 'network') return 'The upload failed: the server cannot be reached.';
  if (error.code === 'rate_limited') return 'Too many uploads at once: try again in a moment.';
  return `The upload failed: ${error.message || error.code}`;
}

export function isImage(contentType: string): boolean {
  return /^image\/(png|jpe?g|gif|webp|avif|bmp)$/i.test(contentType);
}

/** "12 KB", "3.4 MB". */
export function fileSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

export interface UploadRequest {
  url: string;
  token: string;
  file: Blob;
  contentType: string;
  onProgress: (loaded: number) => void;
}

export interface UploadHandle {
  /** Resolves to the stored attachment; rejects with { error, status } (status 0: no answer). */
  done: Promise<Attachment>;
  cancel: () => void;
}

export class UploadError extends Error {
  constructor(
    readonly body: ChatErrorBody,
    readonly status: number,
  ) {
    super(body.message);
    this.name = 'UploadError';
  }
}

/** Sends the file as the raw body, reporting the bytes sent. */
export function sendFile({ url, token, file, contentType, onProgress }: UploadRequest): UploadHandle {
  const xhr = new XMLHttpRequest();
  const done = new Promise<Attachment>((resolve, reject) => {
    xhr.open('POST', url);
    xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    xhr.setRequestHeader('Content-Type', contentType || 'application/octet-stream');
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.onprogress = (e) => onProgress(e.loaded);
    xhr.onload = () => {
      let data: unknown = null;
      try {
        data = xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch {
        data = null;
      }
      if (xhr.status >= 200 && xhr.status < 300 && data && typeof (data as Attachment).id === 'string') {
        resolve(data as Attachment);
        return;
      }
      const error = (data as { error?: ChatErrorBody } | null)?.error;
      reject(new UploadError(error ?? { code: `http_${xhr.status}`, message: xhr.statusText }, xhr.status));
    };
    xhr.onerror = () => reject(new UploadError({ code: 'network', message: 'The server cannot be reached.' }, 0));
    xhr.onabort = () => reject(new UploadError({ code: 'cancelled', message: 'Cancelled.' }, 0));
    xhr.send(file);
  });
  return { done, cancel: () => xhr.abort() };
}
