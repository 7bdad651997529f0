// HmmError: the one error type the library throws. `code` is the kernel-style errno name,
// the message says what was wrong and where (address, page, kernel, device).

export type HmmErrorCode =
  | 'EFAULT' // no mapping / no read permission at an address
  | 'EPERM' // write to a read-only mapping, or exclusive access still held
  | 'EINVAL' // bad argument
  | 'ENOENT' // pages that should have moved did not (dmirror's meaning)
  | 'ENOMEM' // out of system RAM or device memory, or mprotect over a hole
  | 'EBUSY' // retry budget exhausted (notifier kept invalidating, page kept pinned)
  | 'EDEVLOST' // the GPU device was lost
  | 'EPOISON' // data that lived only on a lost device
  | 'ESEGV'; // a kernel touched an address outside every mapping

/**
 * The one error type the library throws: `code` is the errno-style name ({@link HmmErrorCode}),
 * the message says what was wrong and where. It crosses to and from CPU threads with its code.
 */
export class HmmError extends Error {
  override readonly name = 'HmmError';
  constructor(
    readonly code: HmmErrorCode,
    message: string,
    /** The first address the error is about, when there is one. */
    readonly address?: number,
  ) {
    super(`${code}: ${message}`);
    Object.setPrototypeOf(this, HmmError.prototype);
  }
}

/** Is `e` an HmmError (with this `code`, when given)? */
export const isHmmError = (e: unknown, code?: HmmErrorCode): e is HmmError => e instanceof HmmError && (code === undefined || e.code === code);
