/**
 * The one interface every hardware adapter implements. The daemon only ever talks to
 * the kernel and the platform through it. Byte counts are bigint; rates are bytes per
 * second (number).
 */

/** Which implementation is in use. */
export type AdapterKind = 'linux' | 'openwrt' | 'raspberrypi' | 'simulated'

/** What an adapter can really do on this machine. */
export interface AdapterCapabilities {
  kind: AdapterKind
  /** True when nothing is enforced or counted by the kernel (the simulated adapter). */
  simulated: boolean
  /** The kernel admits, forwards and NATs gateway clients. */
  gateway: boolean
  /** Per-client byte counters come from the kernel. */
  perClientCounters: boolean
  /** Per-client and total bandwidth limits are enforced by the kernel. */
  kernelLimits: boolean
  /** The kernel counts the daemon's own relay-exit traffic. */
  exitCounters: boolean
  /** Wireless uplink and hotspot state can be read. */
  wireless: boolean
  /** Human-readable remarks the operator should see (e.g. why something is off). */
  notes: string[]
}

/** A hotspot/LAN client of the gateway: an IPv4 address bound to a MAC address. */
export interface GatewayClient {
  /** Dotted-quad IPv4 address. */
  ip: string
  /** Lower-case colon-separated MAC address. */
  mac: string
}

/**
 * Bytes and packets one client moved since the previous read. `upload` is
 * client → upstream, `download` is upstream → client. Bytes are counted at the IP
 * layer: IP header + transport header + payload, no Ethernet header (see
 * hardware/README.md, "What the counters count").
 */
export interface ClientCounters extends GatewayClient {
  uploadBytes: bigint
  uploadPackets: bigint
  downloadBytes: bigint
  downloadPackets: bigint
}

/** A pair of byte/packet counts, one direction each. */
export interface DirectionCounters {
  /** Leaving the counted party (client upload, or the daemon's exit sending). */
  txBytes: bigint
  txPackets: bigint
  /** Arriving at the counted party. */
  rxBytes: bigint
  rxPackets: bigint
}

/**
 * One read of the counters: every count is what accumulated since the previous read,
 * which was zeroed in the same operation (no byte is lost between read and reset).
 */
export interface CounterReading {
  /** Per admitted (or just evicted) client. */
  clients: ClientCounters[]
  /** The clients of this reading together, the sum of `clients` (tx = upload, rx = download). */
  total: DirectionCounters
  /** Packets dropped because their client was not admitted. */
  droppedUnpaid: { bytes: bigint, packets: bigint }
  /** The daemon's own relay-exit traffic (tx = to targets), or null when not counted. */
  exit: DirectionCounters | null
}

/** Kernel-enforced bandwidth limits in bytes per second; null means no limit. */
export interface BandwidthLimits {
  /** Each client, each direction. */
  perClientBytesPerSec: number | null
  /** All clients together, each direction. */
  totalBytesPerSec: number | null
}

/** The upstream link's capacity and current load. */
export interface LinkStatus {
  interface: string
  up: boolean
  /** Negotiated link speed, null when the driver does not say (Wi-Fi, virtual links). */
  speedBytesPerSec: number | null
  /** Usable capacity: the operator's configured uplink capacity, else the link speed. */
  capacityBytesPerSec: number | null
  /** Current receive rate. */
  rxBytesPerSec: number
  /** Current transmit rate. */
  txBytesPerSec: number
}

/** A Wi-Fi network this machine is a client of (its uplink). */
export interface WirelessUplink {
  interface: string
  ssid: string
  signalDbm: number | null
  frequencyMhz: number | null
}

/** A Wi-Fi access point this machine serves. */
export interface WirelessHotspot {
  interface: string
  ssid: string
  up: boolean
  band: string | null
  channel: number | null
}

/** Wireless facts of the platform. */
export interface WirelessState {
  supported: boolean
  /** Why `supported` is false, or a remark. */
  reason: string | null
  uplink: WirelessUplink | null
  hotspots: WirelessHotspot[]
}

/** Operator-facing summary of the adapter. */
export interface AdapterStatus {
  kind: AdapterKind
  simulated: boolean
  started: boolean
  admittedClients: number
  limits: BandwidthLimits
  notes: string[]
}

/** A hardware adapter: see the module comment. */
export interface HardwareAdapter {
  readonly kind: AdapterKind
  /** Sets up kernel state (idempotent: a second start, or a start after a crash, converges). */
  start(): Promise<void>
  /** Removes every kernel object the adapter created and returns the last counts. */
  stop(): Promise<CounterReading>
  capabilities(): AdapterCapabilities
  status(): AdapterStatus
  /** Upstream link capacity and load. */
  linkStatus(): Promise<LinkStatus>
  /** Reads and zeroes every counter in one step. */
  readCounters(): Promise<CounterReading>
  /** Lets a paying client through the gateway (idempotent). */
  admit(client: GatewayClient): Promise<void>
  /** Cuts a client off and returns what it moved since the last read (null if it was not admitted). */
  evict(client: GatewayClient): Promise<ClientCounters | null>
  /** The clients admitted right now, as the kernel sees them. */
  listClients(): Promise<GatewayClient[]>
  /** Replaces the bandwidth limits. */
  setLimits(limits: BandwidthLimits): Promise<void>
  wirelessState(): Promise<WirelessState>
}
