import { readFile } from 'node:fs/promises'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { Value } from '@sinclair/typebox/value'
import { SparebandError } from '../../protocol/errors.ts'
import { ConfigSchema, type Config } from './schema.ts'

/** Raised when the configuration file, environment or flags are invalid. */
export class ConfigError extends SparebandError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_CONFIG', message, options)
  }
}

/** A partial configuration: what a file, the environment or flags contribute. */
export type ConfigLayer = { [K in keyof Config]?: NonNullable<Config[K]> extends object ? Partial<NonNullable<Config[K]>> | Config[K] : Config[K] }

const checker = TypeCompiler.Compile(ConfigSchema)

/** Environment variables that override the configuration, and where they go. */
export const CONFIG_ENV: Record<string, (value: string) => ConfigLayer> = {
  SPAREBAND_DATA_DIR: (v) => ({ dataDir: v }),
  SPAREBAND_LISTEN: (v) => ({ listen: splitList(v) }),
  SPAREBAND_BOOTSTRAP: (v) => ({ bootstrap: splitList(v) }),
  SPAREBAND_RPC_URL: (v) => ({ chain: { rpcUrl: v } }),
  SPAREBAND_CHAIN_ID: (v) => ({ chain: { chainId: Number(v) } }),
  SPAREBAND_CONTRACT: (v) => ({ chain: { contract: v as `0x${string}` } }),
  SPAREBAND_PAYOUT_ADDRESS: (v) => ({ seller: { payoutAddress: v as `0x${string}` } }),
  SPAREBAND_REGION: (v) => ({ seller: { region: v } }),
  SPAREBAND_HARDWARE: (v) => ({ hardware: v as Config['hardware'] }),
  SPAREBAND_API_LISTEN: (v) => ({ apiListen: v }),
  SPAREBAND_LOG_LEVEL: (v) => ({ logLevel: v as Config['logLevel'] })
}

/** Reads a JSON configuration file; a missing file is an error that says how to create one. */
export async function readConfigFile (path: string): Promise<ConfigLayer> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err: any) {
    if (err?.code === 'ENOENT') throw new ConfigError(`no configuration at ${path}; create one with \`spareband init --config ${path}\``)
    throw new ConfigError(`cannot read ${path}: ${err?.message ?? err}`, { cause: err })
  }
  try {
    const parsed = JSON.parse(text)
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('the top level must be an object')
    return parsed
  } catch (err: any) {
    throw new ConfigError(`${path} is not valid JSON: ${err.message}`, { cause: err })
  }
}

/** The layers contributed by `SPAREBAND_*` environment variables. */
export function envLayers (env: NodeJS.ProcessEnv): ConfigLayer[] {
  return Object.entries(CONFIG_ENV)
    .filter(([name]) => env[name] !== undefined && env[name] !== '')
    .map(([name, toLayer]) => toLayer(env[name] as string))
}

/**
 * Merges layers (later wins; objects merge key by key, arrays replace), fills
 * schema defaults and validates. Throws {@link ConfigError} naming every bad field.
 */
export function resolveConfig (layers: readonly ConfigLayer[]): Config {
  const merged = layers.reduce<Record<string, unknown>>((acc, layer) => mergeDeep(acc, layer as Record<string, unknown>), {})
  const withDefaults = Value.Default(ConfigSchema, merged)
  if (!checker.Check(withDefaults)) {
    const problems = [...checker.Errors(withDefaults)].slice(0, 10)
      .map((e) => `  ${e.path === '' ? '(top level)' : e.path}: ${e.message}${e.schema.description !== undefined ? ` (${e.schema.description})` : ''}`)
    throw new ConfigError(`invalid configuration:\n${problems.join('\n')}\nFix the file, the SPAREBAND_* variables or the flags named above.`)
  }
  return withDefaults as Config
}

function mergeDeep (base: Record<string, unknown>, layer: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base }
  for (const [key, value] of Object.entries(layer)) {
    if (key === '__proto__' || key === 'constructor' || key === 'prototype' || value === undefined) continue
    const prev = out[key]
    out[key] = isPlainObject(value) && isPlainObject(prev) ? mergeDeep(prev, value) : value
  }
  return out
}

function isPlainObject (v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

function splitList (v: string): string[] {
  return v.split(',').map((s) => s.trim()).filter((s) => s !== '')
}
