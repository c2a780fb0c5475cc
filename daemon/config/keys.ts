import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts'
import type { Hex } from 'viem'
import { SparebandError } from '../../protocol/errors.ts'

/** Raised when the key file is missing, unreadable, malformed or too widely readable. */
export class KeyFileError extends SparebandError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_KEY_FILE', message, options)
  }
}

/** What the key file stores (JSON, mode 0600). */
interface KeyFileJson {
  version: 1
  /** libp2p identity (Ed25519), protobuf, base64. */
  peerKey: string
  /** Hot EVM key: the seller pays settlement gas with it, the buyer funds channels with it. */
  hotKey: Hex
  /** Buyer's session signer: signs vouchers; distinct from the funding key by design. */
  sessionKey: Hex
}

/** The node's keys, loaded. */
export interface NodeKeys {
  peerKey: PrivateKey
  hot: PrivateKeyAccount
  session: PrivateKeyAccount
}

/** Generates fresh keys and writes them to `path` with mode 0600; refuses to overwrite an existing file. */
export async function createKeyFile (path: string): Promise<NodeKeys> {
  const peerKey = await generateKeyPair('Ed25519')
  const json: KeyFileJson = {
    version: 1,
    peerKey: Buffer.from(privateKeyToProtobuf(peerKey)).toString('base64'),
    hotKey: generatePrivateKey(),
    sessionKey: generatePrivateKey()
  }
  await mkdir(dirname(path), { recursive: true, mode: 0o700 })
  try {
    await writeFile(path, JSON.stringify(json, null, 2) + '\n', { mode: 0o600, flag: 'wx' })
  } catch (err: any) {
    if (err?.code === 'EEXIST') throw new KeyFileError(`${path} exists already; move it away first if you really want new keys (the old ones control funds)`, { cause: err })
    throw err
  }
  await chmod(path, 0o600)
  return { peerKey, hot: privateKeyToAccount(json.hotKey), session: privateKeyToAccount(json.sessionKey) }
}

/** Loads the key file, refusing one that group or others can read. */
export async function readKeyFile (path: string): Promise<NodeKeys> {
  let text: string
  try {
    const st = await stat(path)
    if ((st.mode & 0o077) !== 0) throw new KeyFileError(`${path} is readable by other users (mode ${(st.mode & 0o777).toString(8)}); run \`chmod 600 ${path}\``)
    text = await readFile(path, 'utf8')
  } catch (err: any) {
    if (err instanceof KeyFileError) throw err
    if (err?.code === 'ENOENT') throw new KeyFileError(`no key file at ${path}; create one with \`spareband init\``, { cause: err })
    throw new KeyFileError(`cannot read ${path}: ${err?.message ?? err}`, { cause: err })
  }
  try {
    const json = JSON.parse(text) as KeyFileJson
    if (json.version !== 1) throw new Error(`unsupported key file version ${String(json.version)}`)
    return {
      peerKey: privateKeyFromProtobuf(Buffer.from(json.peerKey, 'base64')),
      hot: privateKeyToAccount(json.hotKey),
      session: privateKeyToAccount(json.sessionKey)
    }
  } catch (err: any) {
    throw new KeyFileError(`${path} is not a valid spareband key file: ${err.message}`, { cause: err })
  }
}
