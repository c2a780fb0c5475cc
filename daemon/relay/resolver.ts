/**
 * Resolves a relay target host to IP addresses on the exit, so that the exit
 * policy judges the addresses actually connected to. An IP literal resolves to
 * itself; a name resolves through the system (`dns.lookup`, which honours
 * /etc/hosts) or through given DNS servers.
 */
import { lookup, Resolver } from 'node:dns/promises'
import { isIP } from 'node:net'
import { SparebandError } from '../../protocol/errors.ts'

/** Resolves target host names to every IPv4 and IPv6 address they have. */
export interface TargetResolver {
  /** All addresses of `host` (at least one), or throws {@link DnsResolutionError}. */
  resolve: (host: string, signal: AbortSignal) => Promise<string[]>
}

/** The target name did not resolve. */
export class DnsResolutionError extends SparebandError {
  constructor (host: string, cause?: unknown) {
    const reason = (cause as NodeJS.ErrnoException)?.code ?? (cause as Error)?.message ?? 'no addresses'
    super('ERR_DNS', `the exit could not resolve "${host}" (${reason}); check the host name`, { cause })
  }
}

/** Resolves through the operating system's resolver (`dns.lookup` with `all: true`). */
export function systemResolver (): TargetResolver {
  return {
    async resolve (host, signal) {
      if (isIP(host) !== 0) return [host]
      const found = await raceAbort(lookup(host, { all: true, order: 'verbatim' }), signal).catch((err: unknown) => {
        throw signal.aborted ? signal.reason : new DnsResolutionError(host, err)
      })
      if (found.length === 0) throw new DnsResolutionError(host)
      return found.map((a) => a.address)
    }
  }
}

/** Options of {@link dnsServerResolver}. */
export interface DnsServerResolverInit {
  /** DNS servers as `ip` or `ip:port` (`[ipv6]:port`). */
  servers: string[]
  /** Time per query in ms. Default 5000. */
  timeoutMs?: number
}

/**
 * Resolves with A and AAAA queries to the given DNS servers, bypassing the
 * system resolver (e.g. to keep buyers' lookups off the operator's ISP DNS).
 */
export function dnsServerResolver (init: DnsServerResolverInit): TargetResolver {
  return {
    async resolve (host, signal) {
      if (isIP(host) !== 0) return [host]
      const resolver = new Resolver({ timeout: init.timeoutMs ?? 5000, tries: 1 })
      resolver.setServers(init.servers)
      const onAbort = (): void => { resolver.cancel() }
      signal.addEventListener('abort', onAbort, { once: true })
      try {
        const [v4, v6] = await Promise.allSettled([resolver.resolve4(host), resolver.resolve6(host)])
        signal.throwIfAborted()
        const addresses = [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])]
        if (addresses.length === 0) {
          throw new DnsResolutionError(host, v4.status === 'rejected' ? v4.reason : undefined)
        }
        return addresses
      } finally {
        signal.removeEventListener('abort', onAbort)
      }
    }
  }
}

/** `promise`, or the signal's reason if it aborts first (the lookup itself cannot be cancelled). */
async function raceAbort<T> (promise: Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted()
  const aborted = Promise.withResolvers<never>()
  const onAbort = (): void => { aborted.reject(signal.reason) }
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    return await Promise.race([promise, aborted.promise])
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}
