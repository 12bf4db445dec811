// A dialog around one form that acts on the server (transfer, close): its
// own error line, and a submit button that stays disabled while the action
// is under way, so a second click cannot send it twice.

import { useState, type FormEvent, type ReactNode } from 'react';
import { Modal } from './Modal';

export interface FormDialogProps {
  title: string;
  submitLabel: string;
  tone: 'primary' | 'danger';
  onCancel: () => void;
  /** Why the form cannot be sent as it stands, or null; checked before anything is sent. */
  validate?: () => string | null;
  /** Resolves to the message to show, or null once done (the caller then closes the dialog). */
  onSubmit: () => Promise<string | null>;
  /** The submit button is off while this is true (nothing to send yet). */
  submitDisabled?: boolean;
  children: ReactNode;
}

export function FormDialog({ title, submitLabel, tone, onCancel, validate, onSubmit, submitDisabled = false, children }: FormDialogProps) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const invalid = validate?.() ?? null;
    if (invalid) {
      setError(invalid);
      return;
    }
    setBusy(true);
    setError(null);
    const message = await onSubmit();
    setBusy(false);
    if (message) setError(message);
  };
  return (
    <Modal title={title} onClose={onCancel}>
      <form onSubmit={(e) => void submit(e)} className="stack">
        {children}
        {error && (
          <p className="inline-error" role="alert">
            {error}
          </p>
        )}
        <div className="modal-actions">
          <button type="button" className="btn" onClick={onCancel}>
            Cancel
          </button>
          <button type="submit" className={`btn btn-${tone}`} disabled={busy || submitDisabled}>
            {submitLabel}
          </button>
        </div>
      </form>
    </Modal>
  );
}
