// useUploads: the files being attached to the next message of one session.
// Each file is sent at once (raw body, XMLHttpRequest for its progress), can
// be cancelled while under way or removed once done, and the finished ones
// go with the message; what is left when the screen goes is cancelled.

import { useCallback, useEffect, useReducer, useRef } from 'react';
import { anyUploading, describeUploadError, readyIds, roomFor, sendFile, uploadsReducer, UploadError, type UploadHandle, type UploadItem } from '../lib/upload';
import type { Attachment } from '../lib/types';
import { MAX_ATTACHMENTS } from '../lib/types';
import { useChatClient } from './ChatContext';

export interface UseUploadsResult {
  items: UploadItem[];
  /** Starts uploading the files (past the limit per message they are refused with a reason). */
  add: (files: FileList | File[]) => void;
  /** Cancels an upload under way, or removes a finished or failed one. */
  remove: (key: string) => void;
  /** The finished uploads, for the message. */
  ready: () => Attachment[];
  busy: boolean;
  /** Forget everything (after the message is queued). */
  clear: () => void;
}

let counter = 0;

export function useUploads(sessionId: string): UseUploadsResult {
  const client = useChatClient();
  const [items, dispatch] = useReducer(uploadsReducer, []);
  const handles = useRef(new Map<string, UploadHandle>());
  const latest = useRef(items);
  latest.current = items;

  useEffect(
    () => () => {
      for (const handle of handles.current.values()) handle.cancel();
      handles.current.clear();
    },
    [],
  );

  const add = useCallback(
    (files: FileList | File[]) => {
      let room = roomFor(latest.current);
      for (const file of Array.from(files)) {
        const key = `u${++counter}`;
        const contentType = file.type || 'application/octet-stream';
        dispatch({ type: 'start', key, name: file.name, size: file.size, contentType });
        if (room <= 0) {
          dispatch({ type: 'failed', key, error: `A message carries at most ${MAX_ATTACHMENTS} files.` });
          continue;
        }
        room--;
        void client.api.token().then(
          (token) => {
            const handle = sendFile({
              url: client.api.uploadUrl(sessionId, file.name),
              token,
              file,
              contentType,
              onProgress: (loaded) => dispatch({ type: 'progress', key, loaded }),
            });
            handles.current.set(key, handle);
            handle.done.then(
              (attachment) => dispatch({ type: 'done', key, attachment }),
              (error: unknown) => {
                if (error instanceof UploadError && error.body.code === 'cancelled') return;
                const body = error instanceof UploadError ? error.body : { code: 'unavailable', message: String(error) };
                dispatch({ type: 'failed', key, error: describeUploadError(body, error instanceof UploadError ? error.status : 0) });
              },
            ).finally(() => handles.current.delete(key));
          },
          () => dispatch({ type: 'failed', key, error: 'The upload failed: no valid sign-in.' }),
        );
      }
    },
    [client, sessionId],
  );

  const remove = useCallback((key: string) => {
    handles.current.get(key)?.cancel();
    handles.current.delete(key);
    dispatch({ type: 'remove', key });
  }, []);

  const ready = useCallback(() => {
    const ids = new Set(readyIds(latest.current));
    return latest.current.filter((i) => i.attachment && ids.has(i.attachment.id)).map((i) => i.attachment!);
  }, []);

  const clear = useCallback(() => dispatch({ type: 'clear' }), []);

  return { items, add, remove, ready, busy: anyUploading(items), clear };
}
