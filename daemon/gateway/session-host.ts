/**
 * The contract between the payment service and the gateway: the payment service
 * opens `service: 'gateway'` sessions and hands them to the gateway, which admits
 * the buyer's LAN client, meters it with the kernel's counters and evicts it when
 * its credit runs out (like `daemon/relay/session-gate.ts` for the relay exit).
 */
import type { Connection } from '@libp2p/interface'
import type { Hex } from 'viem'
import type { GatewayClient } from '../../hardware/adapter.ts'
import type { SellerSession } from '../payment/seller-session.ts'

/** What the payment service needs from the gateway. */
export interface GatewaySessionHost {
  /**
   * The LAN client behind a buyer's connection: the connection's remote IPv4 address
   * and the MAC the kernel's neighbour table holds for it on the LAN interface.
   * Throws a `SparebandError` whose code and message the payment service sends back
   * as the refusal (`ERR_NOT_ON_LAN`, `ERR_GATEWAY_CLIENT_BUSY`).
   */
  clientOf: (connection: Connection) => Promise<GatewayClient>
  /** Bytes the gateway counted for a channel so far (survives restarts), or undefined when it never metered it. */
  deliveredBytes: (channelId: Hex) => bigint | undefined
  /** Takes over a new session: admits the client while the session has credit. */
  attach: (session: SellerSession, client: GatewayClient) => Promise<void>
  /** Evicts the session's client, adds its last counts to the session and forgets it. */
  detach: (session: SellerSession) => Promise<void>
}
