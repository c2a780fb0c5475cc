/**
 * Parsers of `nft -j` (libnftables JSON schema 1) output. Counter values are read as
 * bigint from the JSON source text, so 64-bit kernel counters never lose precision.
 */
import { UnexpectedOutputError } from '../errors.ts'

/** One object of an `nft -j` answer, e.g. `{ counter: {…} }` or `{ map: {…} }`. */
export type NftObject = Record<string, Record<string, unknown>>

/** A named counter as listed or reset by `nft -j`. */
export interface NftCounter {
  family: string
  table: string
  name: string
  packets: bigint
  bytes: bigint
}

/** A table as listed by `nft -j list tables`. */
export interface NftTable {
  family: string
  name: string
}

const BIG_KEYS = new Set(['bytes', 'packets'])

/**
 * The `ip_forward` value recorded in the comment of `nft list table …` text output
 * (nft 1.0.6 leaves table comments out of its JSON), or null when there is none.
 */
export function parseForwardingComment (text: string, prefix: string): string | null {
  const at = text.indexOf(`comment "${prefix}`)
  if (at < 0) return null
  const value = text.charAt(at + 'comment "'.length + prefix.length)
  return value === '0' || value === '1' ? value : null
}

/**
 * Parses `nft -j` stdout into its objects. nft prints one JSON document per command,
 * one per line (`nft -j 'reset counter …; reset counter …'` prints two); the objects
 * of all of them are returned in order, `metainfo` left out.
 */
export function parseNftJson (stdout: string): NftObject[] {
  const objects: NftObject[] = []
  for (const line of stdout.split('\n')) {
    if (line.trim() === '') continue
    let doc: unknown
    try {
      doc = JSON.parse(line, (key, value, context?: { source?: string }) => {
        if (BIG_KEYS.has(key) && typeof value === 'number' && context?.source !== undefined) return BigInt(context.source)
        return value
      })
    } catch (err) {
      throw new UnexpectedOutputError('nft -j', `not JSON (${(err as Error).message})`)
    }
    const list = (doc as { nftables?: unknown }).nftables
    if (!Array.isArray(list)) throw new UnexpectedOutputError('nft -j', 'no "nftables" array')
    for (const item of list) {
      if (typeof item !== 'object' || item === null) throw new UnexpectedOutputError('nft -j', 'an item of "nftables" is not an object')
      if ('metainfo' in item) continue
      objects.push(item as NftObject)
    }
  }
  return objects
}

function str (o: Record<string, unknown>, key: string, what: string): string {
  const v = o[key]
  if (typeof v !== 'string') throw new UnexpectedOutputError('nft -j', `${what} has no string "${key}"`)
  return v
}

function big (o: Record<string, unknown>, key: string, what: string): bigint {
  const v = o[key]
  if (typeof v === 'bigint') return v
  if (typeof v === 'number' && Number.isSafeInteger(v)) return BigInt(v)
  throw new UnexpectedOutputError('nft -j', `${what} has no integer "${key}"`)
}

/** The named counters in parsed `nft -j list counters` / `reset counters` / `reset counter` output. */
export function parseCounters (objects: NftObject[]): NftCounter[] {
  return objects.filter((o) => 'counter' in o).map((o) => {
    const c = o.counter
    return { family: str(c, 'family', 'counter'), table: str(c, 'table', 'counter'), name: str(c, 'name', 'counter'), packets: big(c, 'packets', 'counter'), bytes: big(c, 'bytes', 'counter') }
  })
}

/** The tables in parsed `nft -j list tables` / `list ruleset` output. */
export function parseTables (objects: NftObject[]): NftTable[] {
  return objects.filter((o) => 'table' in o).map((o) => ({ family: str(o.table, 'family', 'table'), name: str(o.table, 'name', 'table') }))
}

/** Names of the flowtables in parsed `nft -j list flowtables` / `list ruleset` output, as `family table name`. */
export function parseFlowtables (objects: NftObject[]): string[] {
  return objects.filter((o) => 'flowtable' in o).map((o) => {
    const f = o.flowtable
    return `${str(f, 'family', 'flowtable')} ${str(f, 'table', 'flowtable')} ${str(f, 'name', 'flowtable')}`
  })
}

/**
 * The elements of a named map in parsed `nft -j list map` output, as key parts and
 * value: `{ concat: [ip, mac] } : "up_…"` becomes `{ key: [ip, mac], value: "up_…" }`.
 */
export function parseMapElements (objects: NftObject[], mapName: string): Array<{ key: string[], value: string }> {
  const map = objects.find((o) => 'map' in o && o.map.name === mapName)?.map
  if (map === undefined) throw new UnexpectedOutputError('nft -j', `map "${mapName}" is missing`)
  const elems = map.elem ?? []
  if (!Array.isArray(elems)) throw new UnexpectedOutputError('nft -j', `map "${mapName}" has a non-array "elem"`)
  return elems.map((e: unknown) => {
    if (!Array.isArray(e) || e.length !== 2 || typeof e[1] !== 'string') throw new UnexpectedOutputError('nft -j', `map "${mapName}" has an element that is not [key, "counter name"]`)
    const k: unknown = e[0]
    let key: unknown[]
    if (typeof k === 'string') key = [k]
    else if (typeof k === 'object' && k !== null && Array.isArray((k as { concat?: unknown }).concat)) key = (k as { concat: unknown[] }).concat
    else throw new UnexpectedOutputError('nft -j', `map "${mapName}" has an element key that is neither a string nor a concat`)
    if (!key.every((p) => typeof p === 'string')) throw new UnexpectedOutputError('nft -j', `map "${mapName}" has a non-string key part`)
    return { key: key as string[], value: e[1] }
  })
}
