/**
 * voucher-verify: signature checks per second of one core (main-thread CPU time, so the
 * figure holds on a busy machine; wall-clock rates are printed too), `VoucherVerifier` against
 * viem's `verifyTypedData` measured in the same run, over pre-signed vouchers of
 * distinct channels and signers. One line per secp256k1 backend (native, noble) and
 * one for `recoverSigner` (which adds the EIP-55 checksum). Exits non-zero if any
 * check gives a wrong answer.
 */
import { randomBytes } from 'node:crypto'
import { verifyTypedData, type Address, type Hex } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { nativeSecp256k1Backend, nobleSecp256k1Backend } from '../protocol/secp256k1.ts'
import { VoucherVerifier } from '../protocol/voucher-verify.ts'
import { signVoucher, voucherTypedData, type SignedVoucher, type VoucherDomain } from '../protocol/voucher.ts'

const VOUCHERS = 1000
const RUN_MS = 2000
const WARMUP_MS = 300
const CHECK_EVERY = 32

const domain: VoucherDomain = { chainId: 31337, verifyingContract: '0x5FbDB2315678afecb367f032d93F642f64180aa3' }

interface Case {
  signer: Address
  voucher: SignedVoucher
}

/** Operations done, with the main thread's CPU time and the wall time they took. */
interface Sample {
  ops: number
  cpuMs: number
  wallMs: number
}

function threadCpuMs (): number {
  const { user, system } = process.threadCpuUsage()
  return (user + system) / 1000
}

/** Runs the synchronous `op` over the cases, round-robin, for `durationMs` of wall time. */
function measure (cases: readonly Case[], durationMs: number, op: (c: Case) => boolean): Sample {
  const cpuStart = threadCpuMs()
  const start = performance.now()
  let ops = 0
  let wallMs = 0
  while (wallMs < durationMs) {
    for (let i = 0; i < CHECK_EVERY; i++) {
      const c = cases[ops % cases.length]
      if (!op(c)) throw new Error(`wrong answer for the voucher of channel ${c.voucher.channelId}`)
      ops++
    }
    wallMs = performance.now() - start
  }
  return { ops, cpuMs: threadCpuMs() - cpuStart, wallMs }
}

/** {@link measure} for an asynchronous `op`, awaited one at a time. */
async function measureAsync (cases: readonly Case[], durationMs: number, op: (c: Case) => Promise<boolean>): Promise<Sample> {
  const cpuStart = threadCpuMs()
  const start = performance.now()
  let ops = 0
  let wallMs = 0
  while (wallMs < durationMs) {
    for (let i = 0; i < CHECK_EVERY; i++) {
      const c = cases[ops % cases.length]
      if (!(await op(c))) throw new Error(`wrong answer for the voucher of channel ${c.voucher.channelId}`)
      ops++
    }
    wallMs = performance.now() - start
  }
  return { ops, cpuMs: threadCpuMs() - cpuStart, wallMs }
}

/** A sample of `op` taken after a warm-up. */
function sample (cases: readonly Case[], op: (c: Case) => boolean): Sample {
  measure(cases, WARMUP_MS, op)
  return measure(cases, RUN_MS, op)
}

/** The JSON line of one measurement: rates per second of main-thread CPU time (one core), and per wall second. */
function report (op: string, backend: string, ours: Sample, viem: Sample): string {
  const opsPerSec = ours.ops / (ours.cpuMs / 1000)
  const baselineViemOpsPerSec = viem.ops / (viem.cpuMs / 1000)
  return JSON.stringify({
    bench: 'voucher-verify',
    op,
    backend,
    opsPerSec: round(opsPerSec),
    baselineViemOpsPerSec: round(baselineViemOpsPerSec),
    ratio: round(opsPerSec / baselineViemOpsPerSec),
    wallOpsPerSec: round(ours.ops / (ours.wallMs / 1000)),
    baselineViemWallOpsPerSec: round(viem.ops / (viem.wallMs / 1000)),
    ops: ours.ops,
    vouchers: VOUCHERS,
    signers: VOUCHERS
  }) + '\n'
}

function round (x: number): number {
  return Math.round(x * 100) / 100
}

const cases: Case[] = await Promise.all(Array.from({ length: VOUCHERS }, async () => {
  const account = privateKeyToAccount(generatePrivateKey())
  const voucher = await signVoucher(account, domain, {
    channelId: `0x${randomBytes(32).toString('hex')}` as Hex,
    cumulativeAmount: BigInt(`0x${randomBytes(12).toString('hex')}`),
    cumulativeBytes: BigInt(`0x${randomBytes(8).toString('hex')}`)
  })
  return { signer: account.address, voucher }
}))

const viemArgs = new Map(cases.map((c) => [c, { ...voucherTypedData(domain, c.voucher), address: c.signer, signature: c.voucher.signature }]))
const viemVerify = async (c: Case): Promise<boolean> => await verifyTypedData(viemArgs.get(c)!)
await measureAsync(cases, WARMUP_MS, viemVerify)
const viem = await measureAsync(cases, RUN_MS, viemVerify)

for (const backend of [nativeSecp256k1Backend(), nobleSecp256k1Backend()]) {
  const verifier = new VoucherVerifier(domain, { secp256k1: backend })
  process.stdout.write(report('verify', verifier.backend, sample(cases, (c) => verifier.verify(c.voucher, c.signer)), viem))
  if (backend.name === 'native') {
    process.stdout.write(report('recoverSigner', verifier.backend, sample(cases, (c) => verifier.recoverSigner(c.voucher) === c.signer), viem))
  }
}
