/**
 * Benchmark runner: `npm run bench -- NAME [NAME…]` runs `bench/NAME.ts` with this
 * Node (the pinned Node 24) and passes its JSON lines through to stdout. With no
 * name it lists the benchmarks. Exits non-zero if a benchmark fails.
 */
import { spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const benchDir = dirname(fileURLToPath(import.meta.url))
const available = readdirSync(benchDir)
  .filter((f) => f.endsWith('.ts') && f !== 'run.ts' && !f.startsWith('_'))
  .map((f) => f.slice(0, -3))
  .sort()

const names = process.argv.slice(2).filter((a) => !a.startsWith('-'))
if (names.length === 0) {
  process.stderr.write(`usage: npm run bench -- NAME [NAME…]\navailable: ${available.join(', ')}\n`)
  process.exit(2)
}
let failed = 0
for (const name of names) {
  if (!available.includes(name)) {
    process.stderr.write(`unknown benchmark "${name}"; available: ${available.join(', ')}\n`)
    process.exit(2)
  }
  const res = spawnSync(process.execPath, [join(benchDir, `${name}.ts`)], { stdio: 'inherit' })
  if (res.status !== 0) {
    process.stderr.write(`benchmark "${name}" failed (exit ${res.status ?? res.signal})\n`)
    failed++
  }
}
process.exit(failed === 0 ? 0 : 1)
