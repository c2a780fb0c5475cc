/**
 * The contract between the relay exit and whoever bills relay traffic (the
 * payment service). The exit asks the gate whether a stream may be opened,
 * then asks the session for credit before it forwards any byte, and cuts the
 * session's streams when the session is revoked.
 */
import type { PeerId } from '@libp2p/interface'

/** `up`: buyer → target (read from the relay stream); `down`: target → buyer. */
export type RelayDirection = 'up' | 'down'

/**
 * One buyer's payment session as the exit sees it. Every relay stream opened
 * under the session shares it.
 *
 * Credit accounting is exact: the exit forwards only bytes that
 * {@link RelaySession.take} granted, so the bytes forwarded never exceed what
 * the session chose to grant (the credit window).
 */
export interface RelaySession {
  /**
   * Grants up to `bytes` of credit for bytes about to be forwarded in
   * `direction`, and counts the granted bytes as used. Returns how many were
   * granted: `bytes` when credit suffices, fewer (possibly `0`) when the
   * window is nearly or fully used. Must be synchronous and cheap: it is
   * called for every chunk.
   */
  take: (bytes: number, direction: RelayDirection) => number
  /**
   * Resolves when `take` may grant again (a voucher arrived and the window
   * moved). Rejects when `signal` aborts (the stream ended) or the session
   * will never get credit again. While a stream waits here, the exit reads
   * neither from the buyer nor from the target.
   */
  waitForCredit: (signal: AbortSignal) => Promise<void>
  /**
   * Registers `listener`, called once if the session is revoked (buyer
   * stopped paying, channel closed, daemon stopping); the exit then aborts
   * every stream of the session with `reason`. Returns a function that
   * removes the listener (the exit calls it when the stream ends).
   */
  onRevoked: (listener: (reason: Error) => void) => () => void
}

/** The gate's answer to a relay request. */
export type RelayAuthorization =
  | { ok: true, session: RelaySession }
  | { ok: false, code: string, message: string }

/** Decides which relay requests are billed to which session. */
export interface RelaySessionGate {
  /**
   * Looks up payment session `sessionId` for the buyer `peer`. Answers
   * `{ ok: false, code, message }` with a stable code (`ERR_UNKNOWN_SESSION`
   * when there is no such session or it belongs to another peer,
   * `ERR_NO_CREDIT` when it may not open streams now); the code and message
   * are sent to the buyer.
   */
  authorize: (peer: PeerId, sessionId: string) => Promise<RelayAuthorization>
}
