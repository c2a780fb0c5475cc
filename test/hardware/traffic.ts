/**
 * Traffic tool run inside a namespace by the hardware tests and benchmarks
 * (`ip netns exec NS node test/hardware/traffic.ts …`). Bounded in time.
 *
 *   serve HOST PORT SECONDS            accept connections for at most SECONDS: read an
 *                                      8-byte download size, then the upload until EOF,
 *                                      then send the download and close; prints "ready",
 *                                      then "peer ADDRESS" for each connection
 *   send HOST PORT UP DOWN TIMEOUT_MS  upload UP bytes, download DOWN bytes; prints one
 *                                      JSON line {ok, up, down, ms} or {ok:false, error}
 */
import { createConnection, createServer } from 'node:net'

const [mode, host, portText, a, b, c] = process.argv.slice(2)
const port = Number(portText)
const CHUNK = Buffer.alloc(64 * 1024, 0x5b)

function writeBytes (socket: import('node:net').Socket, total: number, done: () => void): void {
  let left = total
  const pump = (): void => {
    while (left > 0) {
      const n = Math.min(left, CHUNK.length)
      left -= n
      if (!socket.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
        socket.once('drain', pump)
        return
      }
    }
    done()
  }
  pump()
}

if (mode === 'serve') {
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    process.stdout.write(`peer ${socket.remoteAddress}\n`)
    let header = Buffer.alloc(0)
    let download = -1
    socket.on('data', (chunk: Buffer) => {
      if (download >= 0) return
      header = Buffer.concat([header, chunk])
      if (header.length >= 8) download = Number(header.readBigUInt64BE(0))
    })
    socket.on('end', () => { writeBytes(socket, Math.max(download, 0), () => socket.end()) })
    socket.on('error', () => socket.destroy())
  })
  server.listen(port, host, () => { process.stdout.write('ready\n') })
  setTimeout(() => { process.exit(0) }, Number(a) * 1000).unref()
} else if (mode === 'send') {
  const up = Number(a)
  const down = Number(b)
  const timeoutMs = Number(c)
  const started = performance.now()
  let received = 0
  const finish = (result: object): void => {
    process.stdout.write(JSON.stringify(result) + '\n')
    process.exit(0)
  }
  setTimeout(() => { finish({ ok: false, error: 'timeout', up, down: received, ms: performance.now() - started }) }, timeoutMs).unref()
  const socket = createConnection({ host, port, allowHalfOpen: true }, () => {
    const header = Buffer.alloc(8)
    header.writeBigUInt64BE(BigInt(down))
    socket.write(header)
    writeBytes(socket, up, () => socket.end())
  })
  socket.on('data', (chunk: Buffer) => { received += chunk.length })
  socket.on('end', () => { finish({ ok: received === down, up, down: received, ms: performance.now() - started }) })
  socket.on('error', (err: NodeJS.ErrnoException) => { finish({ ok: false, error: err.code ?? err.message }) })
} else {
  process.stderr.write('usage: traffic.ts serve HOST PORT SECONDS | send HOST PORT UP DOWN TIMEOUT_MS\n')
  process.exit(2)
}
