// A file a message carries. Images show as a thumbnail, fetched with the
// token (an <img> cannot send the Authorization header) into a blob URL
// that is revoked when it goes; a click opens the full size. Other files are
// a download link that fetches the bytes the same way and saves them under
// the file's name.

import { useEffect, useState } from 'react';
import { useChatClient } from '../chat/ChatContext';
import { toErrorBody } from '../chat/ChatClient';
import { fileSize, isImage } from '../lib/upload';
import type { Attachment } from '../lib/types';
import { PaperclipIcon } from './Icons';
import { Modal } from './Modal';

/** A blob URL of the attachment's bytes while mounted (null until fetched). */
function useAttachmentUrl(attachment: Attachment, enabled: boolean): { url: string | null; error: string | null } {
  const client = useChatClient();
  const [state, setState] = useState<{ url: string | null; error: string | null }>({ url: null, error: null });
  const { id, sessionId } = attachment;
  useEffect(() => {
    if (!enabled) return undefined;
    let live = true;
    let url: string | null = null;
    client.api.download({ id, sessionId }).then(
      (blob) => {
        if (!live) return;
        url = URL.createObjectURL(blob);
        setState({ url, error: null });
      },
      (error: unknown) => {
        if (live) setState({ url: null, error: toErrorBody(error).message });
      },
    );
    return () => {
      live = false;
      if (url) URL.revokeObjectURL(url);
    };
  }, [client, id, sessionId, enabled]);
  return state;
}

function ImageAttachment({ attachment }: { attachment: Attachment }) {
  const { url, error } = useAttachmentUrl(attachment, true);
  const [open, setOpen] = useState(false);
  if (error) {
    return (
      <span className="attachment attachment-error" data-testid="attachment" data-kind="image">
        {attachment.name}: could not be loaded ({error})
      </span>
    );
  }
  return (
    <>
      <button
        type="button"
        className="attachment attachment-image"
        data-testid="attachment"
        data-kind="image"
        data-loaded={url ? 'true' : 'false'}
        onClick={() => setOpen(true)}
        aria-label={`Open image ${attachment.name}`}
        disabled={!url}
      >
        {url ? (
          <img src={url} alt={attachment.name} width={attachment.width ?? undefined} height={attachment.height ?? undefined} data-testid="attachment-thumbnail" />
        ) : (
          <span className="attachment-placeholder">Loading {attachment.name}…</span>
        )}
      </button>
      {open && url && (
        <Modal title={attachment.name} onClose={() => setOpen(false)}>
          <img className="attachment-full" src={url} alt={attachment.name} data-testid="attachment-full" />
          <div className="modal-actions">
            <a className="btn" href={url} download={attachment.name}>
              Download
            </a>
            <button type="button" className="btn" onClick={() => setOpen(false)}>
              Close
            </button>
          </div>
        </Modal>
      )}
    </>
  );
}

function FileAttachment({ attachment }: { attachment: Attachment }) {
  const client = useChatClient();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const download = async () => {
    setBusy(true);
    setError(null);
    try {
      const blob = await client.api.download(attachment);
      const url = URL.createObjectURL(blob);
      const link = document.createElement('a');
      link.href = url;
      link.download = attachment.name;
      document.body.appendChild(link);
      link.click();
      link.remove();
      // The browser has taken the URL once the click is handled.
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (err) {
      setError(toErrorBody(err).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <span className="attachment attachment-file" data-testid="attachment" data-kind="file">
      <button type="button" className="link" onClick={() => void download()} disabled={busy}>
        <PaperclipIcon size={13} />{' '}
        {attachment.name}
      </button>{' '}
      <span className="muted small">({fileSize(attachment.size)})</span>
      {error && (
        <span className="error-text small" role="alert">
          {' '}
          The file could not be downloaded: {error}
        </span>
      )}
    </span>
  );
}

export function AttachmentView({ attachment }: { attachment: Attachment }) {
  return isImage(attachment.contentType) ? <ImageAttachment attachment={attachment} /> : <FileAttachment attachment={attachment} />;
}

export function AttachmentList({ attachments, pending = false }: { attachments: Attachment[]; pending?: boolean }) {
  if (attachments.length === 0) return null;
  return (
    <div className="attachments" data-testid="attachments">
      {attachments.map((a) =>
        pending ? (
          <span key={a.id} className="attachment attachment-file">
            <PaperclipIcon size={13} />{' '}
            {a.name} <span className="muted small">({fileSize(a.size)})</span>
          </span>
        ) : (
          <AttachmentView key={a.id} attachment={a} />
        ),
      )}
    </div>
  );
}
