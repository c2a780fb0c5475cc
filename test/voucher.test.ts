import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import { before, describe, it } from 'node:test'
import {
  compactSignatureToSignature,
  getAddress,
  hashTypedData,
  keccak256,
  parseSignature,
  recoverTypedDataAddress,
  serializeSignature,
  signatureToCompactSignature,
  toHex,
  verifyTypedData,
  type Address,
  type Hex
} from 'viem'
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts'
import {
  nativeSecp256k1Backend,
  nobleSecp256k1Backend,
  secp256k1Backend,
  selectSecp256k1Backend,
  selfTestSecp256k1Backend,
  Secp256k1BackendError,
  type Secp256k1Backend
} from '../protocol/secp256k1.ts'
import { VOUCHER_TYPE_HASH, VoucherVerifier } from '../protocol/voucher-verify.ts'
import {
  assertVoucherFields,
  encodeVoucherRecord,
  encodeVoucherRecords,
  InvalidVoucherError,
  MAX_VOUCHER_AMOUNT,
  MAX_VOUCHER_BYTES,
  signVoucher,
  voucherTypedData,
  VOUCHER_RECORD_BYTES,
  type SignedVoucher,
  type Voucher,
  type VoucherDomain
} from '../protocol/voucher.ts'

const require = createRequire(import.meta.url)

const DOMAIN: VoucherDomain = { chainId: 31337, verifyingContract: '0x5FbDB2315678afecb367f032d93F642f64180aa3' }
const OTHER_CHAIN: VoucherDomain = { ...DOMAIN, chainId: 8453 }
const OTHER_CONTRACT: VoucherDomain = { ...DOMAIN, verifyingContract: '0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512' }
const CURVE_ORDER = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n
const HALF_CURVE_ORDER = CURVE_ORDER >> 1n

const RANDOM_VOUCHERS = 80
const SIGNERS = 20

function randomHex (size: number): Hex {
  return `0x${randomBytes(size).toString('hex')}`
}

function randomBelow (bits: number): bigint {
  return BigInt(randomHex(Math.ceil(bits / 8))) & ((1n << BigInt(bits)) - 1n)
}

function randomVoucher (): Voucher {
  return { channelId: randomHex(32), cumulativeAmount: randomBelow(96), cumulativeBytes: randomBelow(64) }
}

// viem is the reference; its answers are memoised because both backends ask the same questions.
const viemRecovered = new Map<string, Promise<Address | null>>()
const viemVerified = new Map<string, Promise<boolean>>()

function questionKey (domain: VoucherDomain, voucher: SignedVoucher, address = ''): string {
  return [domain.chainId, domain.verifyingContract, voucher.channelId, voucher.cumulativeAmount, voucher.cumulativeBytes, voucher.signature, address].join(':')
}

/** viem's recovered address, or null where viem throws. */
async function viemRecover (domain: VoucherDomain, voucher: SignedVoucher): Promise<Address | null> {
  const key = questionKey(domain, voucher)
  let answer = viemRecovered.get(key)
  if (answer === undefined) {
    answer = recoverTypedDataAddress({ ...voucherTypedData(domain, voucher), signature: voucher.signature }).catch(() => null)
    viemRecovered.set(key, answer)
  }
  return await answer
}

/** viem's verdict, false where viem throws. */
async function viemVerify (domain: VoucherDomain, voucher: SignedVoucher, address: Address): Promise<boolean> {
  const key = questionKey(domain, voucher, address)
  let answer = viemVerified.get(key)
  if (answer === undefined) {
    answer = verifyTypedData({ ...voucherTypedData(domain, voucher), address, signature: voucher.signature }).catch(() => false)
    viemVerified.set(key, answer)
  }
  return await answer
}

function withSignature (voucher: SignedVoucher, signature: Hex): SignedVoucher {
  return { ...voucher, signature }
}

function withS (voucher: SignedVoucher, s: bigint, yParity: number): SignedVoucher {
  const { r } = parseSignature(voucher.signature)
  return withSignature(voucher, serializeSignature({ r, s: toHex(s, { size: 32 }), yParity }))
}

function flipBit (hex: Hex, byteIndex: number): Hex {
  const bytes = Buffer.from(hex.slice(2), 'hex')
  bytes[byteIndex] ^= 0x01
  return `0x${bytes.toString('hex')}`
}

interface Signed {
  account: PrivateKeyAccount
  voucher: SignedVoucher
}

let signed: Signed[] = []

before(async () => {
  const accounts = Array.from({ length: SIGNERS }, () => privateKeyToAccount(generatePrivateKey()))
  const edges: Voucher[] = [
    { channelId: `0x${'00'.repeat(32)}`, cumulativeAmount: 0n, cumulativeBytes: 0n },
    { channelId: `0x${'ff'.repeat(32)}`, cumulativeAmount: MAX_VOUCHER_AMOUNT, cumulativeBytes: MAX_VOUCHER_BYTES }
  ]
  const vouchers = [...edges, ...Array.from({ length: RANDOM_VOUCHERS - edges.length }, randomVoucher)]
  signed = await Promise.all(vouchers.map(async (voucher, i) => {
    const account = accounts[i % SIGNERS]
    return { account, voucher: await signVoucher(account, DOMAIN, voucher) }
  }))
})

describe('protocol/voucher.ts', () => {
  it('assertVoucherFields accepts the full contract range and nothing beyond it', () => {
    const base = { channelId: randomHex(32), cumulativeAmount: 0n, cumulativeBytes: 0n }
    assertVoucherFields(base)
    assertVoucherFields({ ...base, cumulativeAmount: MAX_VOUCHER_AMOUNT, cumulativeBytes: MAX_VOUCHER_BYTES })
    assert.equal(MAX_VOUCHER_AMOUNT, 2n ** 96n - 1n)
    assert.equal(MAX_VOUCHER_BYTES, 2n ** 64n - 1n)
    const bad: Voucher[] = [
      { ...base, cumulativeAmount: MAX_VOUCHER_AMOUNT + 1n },
      { ...base, cumulativeAmount: -1n },
      { ...base, cumulativeBytes: MAX_VOUCHER_BYTES + 1n },
      { ...base, cumulativeBytes: -1n },
      { ...base, channelId: randomHex(31) },
      { ...base, channelId: randomHex(33) },
      { ...base, channelId: `0x${'zz'.repeat(32)}` as Hex },
      { ...base, channelId: randomHex(32).slice(2) as Hex }
    ]
    for (const voucher of bad) {
      assert.throws(() => assertVoucherFields(voucher), (err: unknown) => err instanceof InvalidVoucherError && err.code === 'ERR_INVALID_VOUCHER')
    }
  })

  it('signVoucher and voucherTypedData refuse invalid input', async () => {
    const account = privateKeyToAccount(generatePrivateKey())
    await assert.rejects(signVoucher(account, DOMAIN, { ...randomVoucher(), cumulativeAmount: MAX_VOUCHER_AMOUNT + 1n }), InvalidVoucherError)
    assert.throws(() => voucherTypedData({ ...DOMAIN, verifyingContract: '0x1234' }, randomVoucher()), InvalidVoucherError)
  })

  it('encodeVoucherRecord packs 116 bytes: channelId, amount (12), bytes (8), r, EIP-2098 vs', () => {
    const parities = new Set<number>()
    for (const { voucher } of signed) {
      const record = Buffer.from(encodeVoucherRecord(voucher).slice(2), 'hex')
      assert.equal(record.length, VOUCHER_RECORD_BYTES)
      assert.equal(VOUCHER_RECORD_BYTES, 116)
      assert.equal(`0x${record.subarray(0, 32).toString('hex')}`, voucher.channelId)
      assert.equal(BigInt(`0x${record.subarray(32, 44).toString('hex')}`), voucher.cumulativeAmount)
      assert.equal(BigInt(`0x${record.subarray(44, 52).toString('hex')}`), voucher.cumulativeBytes)
      const compact = signatureToCompactSignature(parseSignature(voucher.signature))
      assert.equal(`0x${record.subarray(52, 84).toString('hex')}`, compact.r)
      assert.equal(`0x${record.subarray(84, 116).toString('hex')}`, compact.yParityAndS)
      const { yParity } = parseSignature(voucher.signature)
      parities.add(yParity)
      assert.equal(record[84] >> 7, yParity, 'the top bit of vs is the y parity')
      const back = compactSignatureToSignature({ r: compact.r, yParityAndS: `0x${record.subarray(84, 116).toString('hex')}` })
      assert.equal(serializeSignature(back), voucher.signature)
    }
    assert.deepEqual([...parities].sort(), [0, 1], 'both y parities occur among the signed vouchers')
  })

  it('encodeVoucherRecords concatenates records and rejects out-of-range vouchers', () => {
    const some = signed.slice(0, 3).map((s) => s.voucher)
    const packed = encodeVoucherRecords(some)
    assert.equal((packed.length - 2) / 2, 3 * VOUCHER_RECORD_BYTES)
    assert.equal(packed, `0x${some.map((v) => encodeVoucherRecord(v).slice(2)).join('')}`)
    assert.throws(() => encodeVoucherRecord({ ...some[0], cumulativeBytes: MAX_VOUCHER_BYTES + 1n }), InvalidVoucherError)
  })
})

describe('VoucherVerifier digest', () => {
  const verifier = new VoucherVerifier(DOMAIN)

  it('caches the type hash of the EIP-712 type string', () => {
    assert.equal(toHex(VOUCHER_TYPE_HASH), keccak256(toHex('Voucher(bytes32 channelId,uint256 cumulativeAmount,uint256 cumulativeBytes)')))
  })

  it('equals viem hashTypedData for random and edge vouchers and for other domains', () => {
    for (const { voucher } of signed) {
      assert.equal(toHex(verifier.digest(voucher)), hashTypedData(voucherTypedData(DOMAIN, voucher)))
    }
    for (const domain of [OTHER_CHAIN, OTHER_CONTRACT]) {
      const voucher = signed[5].voucher
      assert.equal(toHex(new VoucherVerifier(domain).digest(voucher)), hashTypedData(voucherTypedData(domain, voucher)))
      assert.notEqual(toHex(new VoucherVerifier(domain).digest(voucher)), toHex(verifier.digest(voucher)))
    }
  })

  it('throws InvalidVoucherError for fields outside the contract range', () => {
    const base = signed[0].voucher
    const bad: unknown[] = [
      { ...base, cumulativeAmount: MAX_VOUCHER_AMOUNT + 1n },
      { ...base, cumulativeAmount: -1n },
      { ...base, cumulativeAmount: 5 },
      { ...base, cumulativeBytes: MAX_VOUCHER_BYTES + 1n },
      { ...base, cumulativeBytes: -1n },
      { ...base, channelId: randomHex(31) },
      { ...base, channelId: `0x${'ab'.repeat(31)}zz` },
      { ...base, channelId: `1x${'ab'.repeat(32)}` }
    ]
    for (const voucher of bad) {
      assert.throws(() => verifier.digest(voucher as Voucher), InvalidVoucherError)
      assert.throws(() => verifier.verify(voucher as SignedVoucher, signed[0].account.address), InvalidVoucherError)
    }
  })

  it('refuses a malformed verifying contract', () => {
    assert.throws(() => new VoucherVerifier({ chainId: 1, verifyingContract: '0xabc' }), InvalidVoucherError)
  })
})

describe('secp256k1 backend selection', () => {
  it('reports the native addon on this machine', () => {
    const backend = secp256k1Backend()
    assert.equal(backend.name, 'native')
    assert.equal(backend.fallbackReason, undefined)
    assert.equal(new VoucherVerifier(DOMAIN).backend, 'native')
  })

  it('rejects the elliptic fallback and the package entry point, which are not the native class', () => {
    assert.throws(() => nativeSecp256k1Backend(require('secp256k1/elliptic')), Secp256k1BackendError)
    assert.throws(() => nativeSecp256k1Backend(require('secp256k1')), Secp256k1BackendError)
    const fallback = selectSecp256k1Backend(() => require('secp256k1/elliptic'))
    assert.equal(fallback.name, 'noble')
    assert.match(fallback.fallbackReason ?? '', /not the native addon/)
  })

  it('falls back to noble when the addon loads but fails the known-answer test', () => {
    // An addon whose recovery reports success without producing the right key, like a miscompiled build.
    const miscompiled = { Secp256k1: class { ecdsaRecover (): number { return 0 } } }
    assert.throws(() => nativeSecp256k1Backend(miscompiled), Secp256k1BackendError)
    const fallback = selectSecp256k1Backend(() => miscompiled)
    assert.equal(fallback.name, 'noble')
    assert.match(fallback.fallbackReason ?? '', /known-answer test/)
  })

  it('falls back to noble when no native build loads', () => {
    const fallback = selectSecp256k1Backend(() => { throw new Error('No native build was found for platform=test') })
    assert.equal(fallback.name, 'noble')
    assert.match(fallback.fallbackReason ?? '', /No native build was found/)
    assert.equal(new VoucherVerifier(DOMAIN, { secp256k1: fallback }).backend, 'noble')
  })

  it('the known-answer test catches a backend that recovers a wrong key or ignores the digest', () => {
    const native = nativeSecp256k1Backend()
    const wrongKey: Secp256k1Backend = {
      name: 'native',
      recoverPublicKey (out, signature, recoveryId, digest) {
        const ok = native.recoverPublicKey(out, signature, recoveryId, digest)
        out[64] ^= 1
        return ok
      }
    }
    // The digest of the known-answer test, used whatever digest the caller passes.
    const selfTestDigest = Buffer.from('04567180066afd6be437911d6c6eeedea147ac33094f43417f9266110464162e', 'hex')
    const ignoresDigest: Secp256k1Backend = {
      name: 'native',
      recoverPublicKey (out, signature, recoveryId) {
        return native.recoverPublicKey(out, signature, recoveryId, selfTestDigest)
      }
    }
    assert.throws(() => selfTestSecp256k1Backend(wrongKey), Secp256k1BackendError)
    assert.throws(() => selfTestSecp256k1Backend(ignoresDigest), Secp256k1BackendError)
    selfTestSecp256k1Backend(native)
    selfTestSecp256k1Backend(nobleSecp256k1Backend())
  })
})

describe('secp256k1 backends', () => {
  it('refuse recovery ids other than 0/1 and short outputs instead of aborting the process', () => {
    const { voucher } = signed[0]
    const signature = Buffer.from(voucher.signature.slice(2, 130), 'hex')
    const digest = new VoucherVerifier(DOMAIN).digest(voucher)
    for (const backend of [nativeSecp256k1Backend(), nobleSecp256k1Backend()]) {
      // A recovery id above 3 or a 64-byte output makes libsecp256k1 call abort().
      for (const recoveryId of [2, 3, 4, 26, 228, -1]) {
        assert.equal(backend.recoverPublicKey(new Uint8Array(65), signature, recoveryId, digest), false, `${backend.name} recid ${recoveryId}`)
      }
      assert.equal(backend.recoverPublicKey(new Uint8Array(64), signature, 0, digest), false, `${backend.name} short output`)
      assert.equal(backend.recoverPublicKey(new Uint8Array(65), signature, parseSignature(voucher.signature).yParity, digest), true)
    }
  })
})

for (const backendName of ['native', 'noble'] as const) {
  describe(`VoucherVerifier on the ${backendName} backend agrees with viem`, () => {
    const backend = backendName === 'native' ? nativeSecp256k1Backend() : nobleSecp256k1Backend()
    const verifier = new VoucherVerifier(DOMAIN, { secp256k1: backend })

    it(`uses the ${backendName} backend`, () => {
      assert.equal(verifier.backend, backendName)
    })

    it('recovers the checksummed signer of every random valid voucher', async () => {
      for (const { account, voucher } of signed) {
        const recovered = verifier.recoverSigner(voucher)
        assert.equal(recovered, account.address)
        assert.equal(recovered, getAddress(account.address))
        assert.equal(recovered, await viemRecover(DOMAIN, voucher))
        assert.equal(verifier.verify(voucher, account.address), true)
        assert.equal(verifier.verify(voucher, account.address.toLowerCase() as Address), true)
        assert.equal(await viemVerify(DOMAIN, voucher, account.address), true)
        const other = signed.find((s) => s.account !== account)
        assert.ok(other)
        assert.equal(verifier.verify(voucher, other.account.address), false)
      }
    })

    it('accepts v as 0/1 as well as 27/28, and nothing else', async () => {
      for (const { account, voucher } of signed.slice(0, 10)) {
        const { yParity } = parseSignature(voucher.signature)
        const v0 = withSignature(voucher, `${voucher.signature.slice(0, 130)}0${yParity}` as Hex)
        assert.equal(verifier.recoverSigner(v0), account.address)
        assert.equal(await viemRecover(DOMAIN, v0), account.address)
        for (const v of [2, 26, 29, 255]) {
          const bad = withSignature(voucher, `${voucher.signature.slice(0, 130)}${v.toString(16).padStart(2, '0')}` as Hex)
          assert.equal(verifier.recoverSigner(bad), null, `v = ${v}`)
          assert.equal(verifier.verify(bad, account.address), false)
          assert.equal(await viemRecover(DOMAIN, bad), null, `viem also rejects v = ${v}`)
        }
      }
    })

    it('rejects tampered channelId, amount and bytes exactly as viem does', async () => {
      for (const { account, voucher } of signed.slice(0, 20)) {
        const tampered: SignedVoucher[] = [
          { ...voucher, channelId: flipBit(voucher.channelId, 31) },
          { ...voucher, cumulativeAmount: voucher.cumulativeAmount ^ 1n },
          { ...voucher, cumulativeBytes: voucher.cumulativeBytes ^ 1n }
        ]
        for (const t of tampered) {
          assert.equal(verifier.verify(t, account.address), false)
          assert.equal(await viemVerify(DOMAIN, t, account.address), false)
          assert.equal(verifier.recoverSigner(t), await viemRecover(DOMAIN, t))
        }
      }
    })

    it('rejects tampered signatures and recovers what viem recovers', async () => {
      for (const { account, voucher } of signed.slice(0, 20)) {
        const { yParity } = parseSignature(voucher.signature)
        const tampered: SignedVoucher[] = [
          withSignature(voucher, flipBit(voucher.signature, 31)), // r
          withSignature(voucher, flipBit(voucher.signature, 63)), // s, stays low (the low bit)
          withSignature(voucher, `${voucher.signature.slice(0, 130)}${yParity === 0 ? '1c' : '1b'}` as Hex) // v flipped
        ]
        for (const t of tampered) {
          assert.equal(verifier.verify(t, account.address), false)
          assert.equal(await viemVerify(DOMAIN, t, account.address), false)
          assert.equal(verifier.recoverSigner(t), await viemRecover(DOMAIN, t))
        }
      }
    })

    it('returns null for malformed signatures', () => {
      const { account, voucher } = signed[3]
      const sig = voucher.signature
      const malformed: string[] = [
        sig.slice(0, -2), // 64 bytes
        `${sig}00`, // 66 bytes
        sig.slice(2), // no 0x
        `0X${sig.slice(2)}`,
        `${sig.slice(0, 40)}zz${sig.slice(42)}`, // not hex
        `0x${'00'.repeat(32)}${sig.slice(66)}`, // r = 0
        `${sig.slice(0, 66)}${'00'.repeat(32)}1b`, // s = 0
        `0x${CURVE_ORDER.toString(16)}${sig.slice(66)}`, // r = n
        `0x${'ff'.repeat(32)}${sig.slice(66)}` // r > n
      ]
      for (const signature of malformed) {
        assert.equal(verifier.recoverSigner(withSignature(voucher, signature as Hex)), null, signature)
        assert.equal(verifier.verify(withSignature(voucher, signature as Hex), account.address), false)
      }
      assert.equal(verifier.recoverSigner({ ...voucher, signature: 42 as unknown as Hex }), null)
    })

    it('rejects high-s signatures that viem accepts (malleated s\' = n - s with flipped v)', async () => {
      for (const { account, voucher } of signed.slice(0, 20)) {
        const { s, yParity } = parseSignature(voucher.signature)
        assert.ok(BigInt(s) <= HALF_CURVE_ORDER, 'viem signs low-s')
        const malleated = withS(voucher, CURVE_ORDER - BigInt(s), 1 - yParity)
        // viem 2.x (noble recovery) does not check low-s: the twin recovers the same signer.
        assert.equal(await viemRecover(DOMAIN, malleated), account.address)
        assert.equal(await viemVerify(DOMAIN, malleated, account.address), true)
        // We reject it, as the contract and EIP-2 do.
        assert.equal(verifier.recoverSigner(malleated), null)
        assert.equal(verifier.verify(malleated, account.address), false)
      }
    })

    it('draws the low-s line at n/2: s = n/2 is recovered like viem, s = n/2 + 1 is rejected', async () => {
      const { voucher } = signed[7]
      const atHalf = withS(voucher, HALF_CURVE_ORDER, 0)
      const aboveHalf = withS(voucher, HALF_CURVE_ORDER + 1n, 0)
      const recovered = verifier.recoverSigner(atHalf)
      assert.notEqual(recovered, null)
      assert.equal(recovered, await viemRecover(DOMAIN, atHalf))
      assert.notEqual(await viemRecover(DOMAIN, aboveHalf), null)
      assert.equal(verifier.recoverSigner(aboveHalf), null)
    })

    it('rejects vouchers signed for another chain or another contract', async () => {
      for (const domain of [OTHER_CHAIN, OTHER_CONTRACT]) {
        const foreign = new VoucherVerifier(domain, { secp256k1: backend })
        for (const { account, voucher } of signed.slice(0, 10)) {
          assert.equal(foreign.verify(voucher, account.address), false)
          assert.equal(await viemVerify(domain, voucher, account.address), false)
          assert.equal(foreign.recoverSigner(voucher), await viemRecover(domain, voucher))
          const signedThere = await signVoucher(account, domain, voucher)
          assert.equal(foreign.verify(signedThere, account.address), true)
          assert.equal(verifier.verify(signedThere, account.address), false)
        }
      }
    })

    it('throws for a malformed expected signer', () => {
      const { voucher } = signed[0]
      for (const expected of ['0x1234', `${signed[0].account.address}00`, `0x${'zz'.repeat(20)}`, signed[0].account.address.slice(2)]) {
        assert.throws(() => verifier.verify(voucher, expected as Address), InvalidVoucherError)
      }
    })
  })
}
