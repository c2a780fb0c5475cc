/**
 * Where the CLI finds the running daemon's control API and its token: `--api`
 * wins; else `apiListen` and `dataDir` from the configuration (`--config`,
 * `$SPAREBAND_CONFIG`, or `/etc/spareband/config.json` if it exists); else the
 * defaults of `spareband start --dev` (`127.0.0.1:8742`, `./.spareband`).
 */
import { access } from 'node:fs/promises'
import { resolve } from 'node:path'
import type { Command } from 'commander'
import { ApiClient } from '../api/client.ts'
import { parseHostPort, localUrl } from '../api/http.ts'
import { apiTokenPath, readApiToken } from '../api/token.ts'
import { ConfigError, envLayers, readConfigFile, resolveConfig } from '../config/load.ts'

/** The default configuration file. */
export const DEFAULT_CONFIG_PATH = '/etc/spareband/config.json'
/** The data directory of `spareband start --dev`. */
const DEV_DATA_DIR = '.spareband'
const DEFAULT_API_LISTEN = '127.0.0.1:8742'

/** Flags shared by the commands that talk to the daemon. */
export interface ApiTargetOptions {
  api?: string
  config?: string
  dataDir?: string
  json?: boolean
}

/** The API address and the token file of the daemon to talk to. */
export interface ApiTarget {
  url: string
  tokenPath: string
}

/** Adds `--api`, `--config`, `--data-dir` and `--json` to a command. */
export function withApiOptions (command: Command): Command {
  return command
    .option('--api <url>', 'control API of the daemon (default: apiListen from the config, else http://127.0.0.1:8742)')
    .option('-c, --config <path>', `configuration file (default $SPAREBAND_CONFIG, else ${DEFAULT_CONFIG_PATH} if present)`)
    .option('--data-dir <dir>', 'data directory of the daemon (holds the API token)')
    .option('--json', 'print JSON instead of a table')
}

/** Resolves the daemon's API address and token file from flags, environment and config. */
export async function resolveApiTarget (opts: ApiTargetOptions, env: NodeJS.ProcessEnv = process.env): Promise<ApiTarget> {
  const explicit = opts.config ?? (env.SPAREBAND_CONFIG !== undefined && env.SPAREBAND_CONFIG !== '' ? env.SPAREBAND_CONFIG : undefined)
  const configPath = explicit ?? (await pathExists(DEFAULT_CONFIG_PATH) ? DEFAULT_CONFIG_PATH : undefined)
  let listen = DEFAULT_API_LISTEN
  let dataDir = opts.dataDir ?? (env.SPAREBAND_DATA_DIR !== undefined && env.SPAREBAND_DATA_DIR !== '' ? env.SPAREBAND_DATA_DIR : DEV_DATA_DIR)
  if (configPath !== undefined) {
    const config = resolveConfig([await readConfigFile(configPath), ...envLayers(env), ...(opts.dataDir !== undefined ? [{ dataDir: opts.dataDir }] : [])])
    listen = config.apiListen
    dataDir = config.dataDir
  }
  let url = opts.api
  if (url === undefined) {
    const { host, port } = parseHostPort(listen)
    if (port === 0) throw new ConfigError(`apiListen is ${listen}: the daemon picks a free port at each start; pass --api with the URL it printed`)
    url = localUrl(host, port)
  }
  if (!/^https?:\/\//i.test(url)) url = `http://${url}`
  if (!URL.canParse(url)) throw new ConfigError(`--api ${opts.api ?? url} is not a URL; use e.g. http://127.0.0.1:8742`)
  return { url, tokenPath: apiTokenPath(resolve(dataDir)) }
}

/** A client of the target; with `withToken` it reads the token file (mutating routes need it). */
export async function apiClient (target: ApiTarget, withToken: boolean, timeoutMs?: number): Promise<ApiClient> {
  return new ApiClient({ url: target.url, token: withToken ? await readApiToken(target.tokenPath) : undefined, timeoutMs })
}

/** Whether a file exists (and is reachable) at `path`. */
export async function pathExists (path: string): Promise<boolean> {
  try {
    await access(path)
    return true
  } catch {
    return false
  }
}
