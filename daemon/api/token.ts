/**
 * The control API's bearer token: 32 random bytes (hex) in `<dataDir>/api-token`,
 * mode 0600. The daemon creates it on first start and keeps it (an operator may
 * provision their own, or delete the file to get a new one); the CLI reads it to
 * call the API's mutating routes.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { SparebandError } from '../../protocol/errors.ts'

/** Name of the token file inside the data directory. */
export const API_TOKEN_FILE = 'api-token'

const TOKEN_PATTERN = /^[0-9a-f]{64}$/

/** Raised when the token file is unreadable, malformed or readable by other users. */
export class ApiTokenError extends SparebandError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_API_TOKEN', message, options)
  }
}

/** Path of the token file of a data directory. */
export function apiTokenPath (dataDir: string): string {
  return join(dataDir, API_TOKEN_FILE)
}

/** Returns the data directory's token, creating the file (mode 0600) if it does not exist. */
export async function ensureApiToken (dataDir: string): Promise<string> {
  const path = apiTokenPath(dataDir)
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  try {
    await writeFile(path, randomBytes(32).toString('hex') + '\n', { mode: 0o600, flag: 'wx' })
  } catch (err: any) {
    if (err?.code !== 'EEXIST') throw new ApiTokenError(`cannot write ${path}: ${err?.message ?? err}; check the data directory's permissions`, { cause: err })
  }
  return await readApiToken(path)
}

/** Reads a token file, refusing one that group or others can read. */
export async function readApiToken (path: string): Promise<string> {
  let text: string
  try {
    const st = await stat(path)
    if ((st.mode & 0o077) !== 0) throw new ApiTokenError(`${path} is readable by other users (mode ${(st.mode & 0o777).toString(8)}); run \`chmod 600 ${path}\``)
    text = await readFile(path, 'utf8')
  } catch (err: any) {
    if (err instanceof ApiTokenError) throw err
    if (err?.code === 'ENOENT') throw new ApiTokenError(`no API token at ${path}; it is created when the daemon starts — start it with \`spareband start\`, or pass --data-dir or --config for the daemon's data directory`, { cause: err })
    throw new ApiTokenError(`cannot read ${path}: ${err?.message ?? err}; run the command as the user the daemon runs as`, { cause: err })
  }
  const token = text.trim()
  if (!TOKEN_PATTERN.test(token)) throw new ApiTokenError(`${path} does not hold a token (64 hex digits); delete it and restart the daemon to get a new one`)
  return token
}
