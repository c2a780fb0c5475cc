/** Protocol prefix of spareband's private kad-dht (gives `/spareband/kad/1.0.0`). */
export const DHT_PROTOCOL_PREFIX = '/spareband'

/** The kad-dht protocol id that follows from {@link DHT_PROTOCOL_PREFIX}. */
export const DHT_PROTOCOL = '/spareband/kad/1.0.0'

/** Request → signed Offer. */
export const OFFER_PROTOCOL = '/spareband/offer/1.0.0'

/** Long-lived payment stream of one buyer session: usage reports, vouchers, acks. */
export const PAYMENT_PROTOCOL = '/spareband/pay/1.0.0'

/** One stream per proxied TCP connection: connect request, response, then raw bytes. */
export const RELAY_PROTOCOL = '/spareband/relay/1.0.0'
