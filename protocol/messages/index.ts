/**
 * Control messages of spareband's libp2p protocols: TypeBox schemas, the
 * decoded types, and one codec per protocol direction. Framing (unsigned-varint
 * length prefix) is the daemon's; it must cap frames at the codec's
 * `maxMessageBytes`.
 */
export * from './codec.ts'
export * from './fields.ts'
export * from './offer.ts'
export * from './payment.ts'
export * from './relay.ts'
export * from '../offer.ts'
export * from '../protocol-ids.ts'
