/**
 * settle-gas: gas per voucher of `SpareChannels.settleBatch` on a local anvil chain.
 *
 * For n = 1, 10, 100, 500 it opens n distinct native-coin channels (each with its own
 * session signer), signs one voucher per channel with protocol/voucher.ts and settles all of
 * them in ONE transaction. Each line reports gasUsed / n (the transaction's 21,000 base and
 * calldata included) against two figures from the same run:
 *  - `baselineGasPerVoucher`: gas of a settleBatch transaction carrying a single voucher, the
 *    cost per voucher without batching;
 *  - `floorGasPerVoucher`: the unavoidable per-voucher cost (ecrecover, one cold SLOAD, one
 *    SSTORE, the record's calldata, three keccaks) computed from the actual records.
 */
import { createPublicClient, createWalletClient, http, keccak256, numberToHex, parseEventLogs, toHex, type Hex } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { startDevnet, type Devnet } from '../daemon/chain/devnet.ts'
import { spareChannelsAbi } from '../protocol/contract/artifact.ts'
import { NATIVE_TOKEN, channelIdOf } from '../protocol/contract/channels.ts'
import { encodeVoucherRecords, signVoucher, type SignedVoucher } from '../protocol/voucher.ts'

const SIZES = [1, 10, 100, 500]
const DEPOSIT = 10n ** 15n
const OPEN_GAS = 300_000n
const GAS_PRICE = 2_000_000_000n

// Per-voucher opcode costs that no implementation can avoid (EIP-2929/2200 and precompile prices).
const ECRECOVER_GAS = 3000n + 100n // precompile + warm STATICCALL
const COLD_SLOAD_GAS = 2100n
const SSTORE_UPDATE_GAS = 2900n // nonzero -> other nonzero, slot already cold-loaded
const KECCAK_GAS = (30n + 6n * 4n) * 2n + (30n + 6n * 3n) // struct hash, hot key (4 words), digest (66 bytes)

const devnet = await startDevnet({ accounts: 3 })
try {
  await run(devnet)
} finally {
  await devnet.stop()
}

async function run (devnet: Devnet): Promise<void> {
  const transport = http(devnet.rpcUrl, { retryCount: 0 })
  const client = createPublicClient({ chain: devnet.chain, transport })
  const settler = createWalletClient({ account: privateKeyToAccount(devnet.accounts[0]), chain: devnet.chain, transport })
  const payer = createWalletClient({ account: privateKeyToAccount(devnet.accounts[1]), chain: devnet.chain, transport })
  const payee = privateKeyToAccount(devnet.accounts[2]).address
  const domain = { chainId: devnet.chainId, verifyingContract: devnet.contract }
  let payerNonce = await client.getTransactionCount({ address: payer.account.address })
  let run = 0

  /** Opens `count` channels with fresh signers and returns one signed voucher per channel. */
  async function openAndSign (count: number): Promise<SignedVoucher[]> {
    const vouchers: SignedVoucher[] = []
    let lastHash: Hex | undefined
    for (let i = 0; i < count; i++) {
      const signer = privateKeyToAccount(generatePrivateKey())
      const salt = keccak256(toHex(`settle-gas/${run}/${i}`))
      // Explicit nonce, gas and fees: one eth_sendRawTransaction per channel, mined by automine.
      lastHash = await payer.writeContract({
        address: devnet.contract,
        abi: spareChannelsAbi,
        functionName: 'open',
        args: [payee, NATIVE_TOKEN, signer.address, salt, DEPOSIT],
        value: DEPOSIT,
        nonce: payerNonce++,
        gas: OPEN_GAS,
        maxFeePerGas: GAS_PRICE,
        maxPriorityFeePerGas: 1n
      })
      const channelId = channelIdOf({ chainId: devnet.chainId, contract: devnet.contract, payer: payer.account.address, payee, token: NATIVE_TOKEN, signer: signer.address, salt })
      vouchers.push(await signVoucher(signer, domain, { channelId, cumulativeAmount: DEPOSIT / 2n + BigInt(i), cumulativeBytes: 5n * 2n ** 30n + BigInt(i) }))
    }
    const receipt = await client.waitForTransactionReceipt({ hash: lastHash as Hex, timeout: 30_000 })
    if (receipt.status !== 'success') throw new Error('opening the benchmark channels failed')
    run++
    return vouchers
  }

  /** Settles all vouchers in one transaction; returns its gasUsed and the records' calldata. */
  async function settle (vouchers: SignedVoucher[]): Promise<{ gasUsed: bigint, records: Hex }> {
    const records = encodeVoucherRecords(vouchers)
    const hash = await settler.writeContract({
      address: devnet.contract,
      abi: spareChannelsAbi,
      functionName: 'settleBatch',
      args: [payee, [{ token: NATIVE_TOKEN, vouchers: records }], numberToHex(run, { size: 32 })]
    })
    const receipt = await client.waitForTransactionReceipt({ hash, timeout: 30_000 })
    const [batch] = parseEventLogs({ abi: spareChannelsAbi, logs: receipt.logs, eventName: 'BatchSettled' })
    if (receipt.status !== 'success' || batch?.args.settledCount !== BigInt(vouchers.length)) {
      throw new Error(`settleBatch of ${vouchers.length} vouchers did not settle them all`)
    }
    return { gasUsed: receipt.gasUsed, records }
  }

  const baseline = await settle(await openAndSign(1))
  for (const n of SIZES) {
    const { gasUsed, records } = await settle(await openAndSign(n))
    const gasPerVoucher = Number(gasUsed) / n
    process.stdout.write(`${JSON.stringify({
      bench: 'settle-gas',
      n,
      gasUsed: Number(gasUsed),
      gasPerVoucher: Math.round(gasPerVoucher),
      baselineGasPerVoucher: Number(baseline.gasUsed),
      ratioToBaseline: round(gasPerVoucher / Number(baseline.gasUsed)),
      floorGasPerVoucher: Number(floorPerVoucher(records, n)),
      ratioToFloor: round(gasPerVoucher / Number(floorPerVoucher(records, n)))
    })}\n`)
  }
}

/** Unavoidable gas per voucher: the opcodes above plus the records' calldata (16 per nonzero byte, 4 per zero byte). */
function floorPerVoucher (records: Hex, n: number): bigint {
  let calldata = 0n
  for (let i = 2; i < records.length; i += 2) calldata += records.slice(i, i + 2) === '00' ? 4n : 16n
  return ECRECOVER_GAS + COLD_SLOAD_GAS + SSTORE_UPDATE_GAS + KECCAK_GAS + calldata / BigInt(n)
}

function round (x: number): number {
  return Math.round(x * 1000) / 1000
}
