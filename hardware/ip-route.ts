import { parseIpJson } from './ip-json.ts'
import type { CommandRunner } from './command.ts'

/** A default route as `ip -j route show default` lists it. */
export interface DefaultRoute {
  interface: string
  gateway: string | null
  metric: number
}

/** Parses `ip -j route show default` (or `ip -j -6 …`); the routes are returned best (lowest metric) first. */
export function parseDefaultRoutes (stdout: string): DefaultRoute[] {
  return parseIpJson('ip -j route', stdout)
    .filter((r) => r.dst === 'default' && typeof r.dev === 'string')
    .map((r) => ({ interface: r.dev as string, gateway: typeof r.gateway === 'string' ? r.gateway : null, metric: typeof r.metric === 'number' ? r.metric : 0 }))
    .sort((a, b) => a.metric - b.metric)
}

/** The interface of the best IPv4 default route, or null when there is none. */
export async function defaultRouteInterface (runner: CommandRunner): Promise<string | null> {
  return (await defaultRoute(runner))?.interface ?? null
}

/** The best IPv4 default route (its interface and next hop), or null when there is none. */
export async function defaultRoute (runner: CommandRunner): Promise<DefaultRoute | null> {
  const { stdout } = await runner(['ip', '-j', 'route', 'show', 'default'])
  return parseDefaultRoutes(stdout)[0] ?? null
}
