/**
 * Base class of every error spareband raises on purpose. `code` is stable and
 * machine-readable; `message` tells the user what happened and what to do.
 */
export class SparebandError extends Error {
  /** Stable, machine-readable error code, e.g. `ERR_VOUCHER_NOT_MONOTONIC`. */
  readonly code: string

  constructor (code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = new.target.name
  }
}
