import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Type } from '@sinclair/typebox'
import { getAddress, zeroAddress } from 'viem'
import {
  isRelayHost,
  messageCodec,
  messageSchema,
  offerCodecs,
  paymentCodecs,
  ProtocolMessageError,
  relayCodecs,
  ShortText,
  type MessageCodec,
  type ProtocolMessageErrorCode
} from '../protocol/messages/index.ts'
import { assertVoucherFields, MAX_VOUCHER_AMOUNT, MAX_VOUCHER_BYTES, type SignedVoucher } from '../protocol/voucher.ts'

const utf8 = new TextEncoder()
const text = new TextDecoder()

const ADDRESS = getAddress('0x70997970c51812dc3a010c7d01b50e0d17dc79c8')
const BYTES32 = `0x${'ab'.repeat(32)}` as const
const SIGNATURE = `0x${'cd'.repeat(64)}1b` as const
const SESSION = '00112233445566778899aabbccddeeff'
const CONTROL_TEXT = '\u0001'.repeat(256) // the longest text, and the one JSON escapes most (6 bytes a character)

const offer = {
  peerId: '12D3KooWNiCLsEzJbhnqx1fZyBnUotr5MDDDLansdRH8G6EqMkPA',
  publicKey: 'CAESIL-TVeK7-QPIydlBt_7tiHUCfVUh4hGKmfKTEJndx7UR',
  payout: ADDRESS,
  chainId: 31337,
  contract: ADDRESS,
  tokens: [{ token: zeroAddress, pricePerGiB: 10n ** 15n }],
  spareUplinkBps: 100_000_000,
  services: ['relay' as const],
  region: 'eu-west',
  reachability: 'public' as const,
  listenAddrs: ['/ip4/127.0.0.1/tcp/4001'],
  issuedAt: 1_750_000_000_000,
  expiresAt: 1_750_000_600_000,
  signature: 'sHVBuvnipnBkvz7FphE4DOa-E7wpfB8F6vl_ZYTx4x_tPDCU-UYAdOIozooynPZRywm1bt_NIXP1TvzHyOFgCQ'
}

/** One valid message of every type, with the codec that carries it. */
const samples: Array<[MessageCodec<any>, Record<string, unknown>]> = [
  [offerCodecs.fromBuyer, { v: 1, type: 'offer-request', nonce: SESSION }],
  [offerCodecs.fromBuyer, { v: 1, type: 'offer-request' }],
  [offerCodecs.fromSeller, { v: 1, type: 'offer', offer }],
  [offerCodecs.fromSeller, { v: 1, type: 'offer-unavailable', code: 'ERR_NOT_SELLING', message: 'outside sharing hours' }],
  [paymentCodecs.fromBuyer, {
    v: 1,
    type: 'open',
    channel: { chainId: 31337, contract: ADDRESS, channelId: BYTES32, payer: ADDRESS, payee: ADDRESS, token: zeroAddress, signer: ADDRESS, salt: BYTES32 },
    service: 'relay',
    pricePerGiB: 10n ** 15n
  }],
  [paymentCodecs.fromBuyer, { v: 1, type: 'voucher', seq: 7, voucher: { channelId: BYTES32, cumulativeAmount: MAX_VOUCHER_AMOUNT, cumulativeBytes: MAX_VOUCHER_BYTES, signature: SIGNATURE } }],
  [paymentCodecs.fromBuyer, { v: 1, type: 'close', reason: 'spend cap reached' }],
  [paymentCodecs.fromSeller, { v: 1, type: 'accepted', sessionId: SESSION, creditWindowBytes: 1n << 20n, toleranceBytes: 4096n, paid: { cumulativeAmount: 0n, cumulativeBytes: 0n } }],
  [paymentCodecs.fromSeller, { v: 1, type: 'rejected', code: 'ERR_PRICE_TOO_LOW', message: 'price below 1000' }],
  [paymentCodecs.fromSeller, { v: 1, type: 'usage', seq: 7, cumulativeBytes: 123_456_789n, amountDue: 115_000n }],
  [paymentCodecs.fromSeller, { v: 1, type: 'voucher-ack', seq: 7, cumulativeAmount: 115_000n, creditUntilBytes: 124_505_365n }],
  [paymentCodecs.fromSeller, { v: 1, type: 'voucher-rejected', seq: 7, code: 'ERR_VOUCHER_UNDERPAID', message: 'short by 3' }],
  [paymentCodecs.fromSeller, { v: 1, type: 'close', reason: 'settling' }],
  [relayCodecs.fromBuyer, { v: 1, type: 'connect', sessionId: SESSION, host: 'example.com', port: 443 }],
  [relayCodecs.fromSeller, { v: 1, type: 'connected' }],
  [relayCodecs.fromSeller, { v: 1, type: 'refused', code: 'ERR_EXIT_POLICY', message: 'target is a private address' }]
]

const allCodecs: Array<MessageCodec<any>> = [offerCodecs.fromBuyer, offerCodecs.fromSeller, paymentCodecs.fromBuyer, paymentCodecs.fromSeller, relayCodecs.fromBuyer, relayCodecs.fromSeller]
const ERROR_CODES = new Set<ProtocolMessageErrorCode>(['ERR_MESSAGE_TOO_LARGE', 'ERR_MESSAGE_MALFORMED', 'ERR_MESSAGE_SCHEMA', 'ERR_MESSAGE_UNKNOWN_TYPE', 'ERR_UNSUPPORTED_VERSION'])

function wireOf (codec: MessageCodec<any>, message: unknown): any {
  return JSON.parse(text.decode(codec.encode(message)))
}

function refuses (fn: () => unknown, code: ProtocolMessageErrorCode): void {
  assert.throws(fn, (err: any) => {
    assert.ok(err instanceof ProtocolMessageError, `expected ProtocolMessageError, got ${err}`)
    assert.equal(err.code, code, err.message)
    return true
  })
}

/** Decodes `wire` after `change` with the codec of sample `index`. */
function decodeChanged (index: number, change: (wire: any) => void): unknown {
  const [codec, message] = samples[index]
  const wire = wireOf(codec, message)
  change(wire)
  return codec.decode(utf8.encode(JSON.stringify(wire)))
}

describe('message codecs', () => {
  it('round-trip every message type, amounts as decimal strings on the wire and bigints in memory', () => {
    for (const [codec, message] of samples) {
      const bytes = codec.encode(message)
      assert.deepEqual(codec.decode(bytes), message)
    }
    const voucherMessage = paymentCodecs.fromBuyer.decode(samples[5][0].encode(samples[5][1]))
    assert.equal(voucherMessage.type, 'voucher')
    const voucher: SignedVoucher = voucherMessage.voucher // the decoded type is the one protocol/voucher.ts works with
    assertVoucherFields(voucher)
    const usage = wireOf(paymentCodecs.fromSeller, samples[9][1])
    assert.deepEqual(usage, { v: 1, type: 'usage', seq: 7, cumulativeBytes: '123456789', amountDue: '115000' })
  })

  it('check the size limit before parsing, on both sides of the boundary', () => {
    for (const codec of allCodecs) {
      refuses(() => codec.decode(new Uint8Array(codec.maxMessageBytes + 1).fill(0x7b)), 'ERR_MESSAGE_TOO_LARGE')
    }
    const [codec, message] = samples[13]
    const json = text.decode(codec.encode(message))
    const padded = (n: number) => utf8.encode(json + ' '.repeat(n - json.length))
    assert.deepEqual(codec.decode(padded(codec.maxMessageBytes)), message)
    refuses(() => codec.decode(padded(codec.maxMessageBytes + 1)), 'ERR_MESSAGE_TOO_LARGE')
  })

  it('refuse to encode a message over the limit', () => {
    const tiny = messageCodec({ protocol: '/test/1.0.0', version: 1, maxMessageBytes: 40, schemas: { note: messageSchema(1, 'note', { text: ShortText }) } })
    assert.equal(tiny.decode(tiny.encode({ v: 1, type: 'note', text: 'short' })).text, 'short')
    refuses(() => tiny.encode({ v: 1, type: 'note', text: 'x'.repeat(30) }), 'ERR_MESSAGE_TOO_LARGE')
  })

  it('fit the largest valid message of every type within its protocol limit', () => {
    const hexAddress = (i: number) => getAddress(`0x${i.toString(16).padStart(40, '1')}`)
    const largestOffer = {
      ...offer,
      peerId: 'Q'.repeat(128),
      publicKey: 'A'.repeat(2048),
      signature: 'A'.repeat(1400),
      chainId: Number.MAX_SAFE_INTEGER,
      tokens: Array.from({ length: 16 }, (_, i) => ({ token: hexAddress(i), pricePerGiB: MAX_VOUCHER_AMOUNT })),
      spareUplinkBps: Number.MAX_SAFE_INTEGER,
      services: ['relay', 'gateway'],
      region: 'a'.repeat(32),
      reachability: 'unknown',
      listenAddrs: Array.from({ length: 16 }, () => `/${'"'.repeat(255)}`),
      issuedAt: Number.MAX_SAFE_INTEGER,
      expiresAt: Number.MAX_SAFE_INTEGER,
      nonce: SESSION
    }
    const largest: Array<[MessageCodec<any>, Record<string, unknown>]> = [
      [offerCodecs.fromSeller, { v: 1, type: 'offer', offer: largestOffer }],
      [offerCodecs.fromSeller, { v: 1, type: 'offer-unavailable', code: `ERR_${'X'.repeat(60)}`, message: CONTROL_TEXT }],
      [paymentCodecs.fromSeller, { v: 1, type: 'rejected', code: `ERR_${'X'.repeat(60)}`, message: CONTROL_TEXT }],
      [paymentCodecs.fromSeller, { v: 1, type: 'voucher-rejected', seq: Number.MAX_SAFE_INTEGER, code: `ERR_${'X'.repeat(60)}`, message: CONTROL_TEXT }],
      [paymentCodecs.fromSeller, { v: 1, type: 'close', reason: CONTROL_TEXT }],
      [paymentCodecs.fromBuyer, { v: 1, type: 'close', reason: CONTROL_TEXT }],
      [relayCodecs.fromBuyer, { v: 1, type: 'connect', sessionId: SESSION, host: `${Array(4).fill('a'.repeat(61)).join('.')}.abcde.`, port: 65535 }],
      [relayCodecs.fromSeller, { v: 1, type: 'refused', code: `ERR_${'X'.repeat(60)}`, message: CONTROL_TEXT }]
    ]
    for (const [codec, message] of largest) {
      assert.deepEqual(codec.decode(codec.encode(message)), message)
    }
  })

  it('refuse bytes that are not UTF-8 JSON', () => {
    const codec = relayCodecs.fromBuyer
    refuses(() => codec.decode(new Uint8Array([0x7b, 0xff, 0x7d])), 'ERR_MESSAGE_MALFORMED')
    refuses(() => codec.decode(new Uint8Array([0x22, 0xed, 0xa0, 0x80, 0x22])), 'ERR_MESSAGE_MALFORMED') // encoded surrogate
    refuses(() => codec.decode(utf8.encode('{"v":1,')), 'ERR_MESSAGE_MALFORMED')
    refuses(() => codec.decode(utf8.encode('{"v":NaN}')), 'ERR_MESSAGE_MALFORMED')
    refuses(() => codec.decode(new Uint8Array()), 'ERR_MESSAGE_MALFORMED')
    refuses(() => codec.decode(utf8.encode('\ufeff{"v":1,"type":"connected"}')), 'ERR_MESSAGE_MALFORMED') // no byte-order mark
    refuses(() => codec.decode('{"v":1}' as any), 'ERR_MESSAGE_MALFORMED')
  })

  it('refuse JSON that is not an object with an integer version', () => {
    const codec = paymentCodecs.fromSeller
    for (const json of ['null', '[]', '1', '"usage"', 'true', '{}', '{"v":"1","type":"close","reason":""}', '{"v":1.5,"type":"close","reason":""}']) {
      refuses(() => codec.decode(utf8.encode(json)), 'ERR_MESSAGE_SCHEMA')
    }
  })

  it('refuse an unsupported version and say which one this node speaks', () => {
    refuses(() => decodeChanged(12, (wire) => { wire.v = 2 }), 'ERR_UNSUPPORTED_VERSION')
    try {
      decodeChanged(12, (wire) => { wire.v = 2; wire.type = 'close-v2' })
    } catch (err: any) {
      assert.equal(err.code, 'ERR_UNSUPPORTED_VERSION', 'the version is checked before the type')
      assert.deepEqual(err.supportedVersions, [1])
      assert.match(err.message, /version 2, this node speaks version 1/)
    }
  })

  it('refuse unknown types, including inherited property names and the other direction\'s messages', () => {
    for (const type of ['nope', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 7, null]) {
      refuses(() => decodeChanged(12, (wire) => { wire.type = type }), 'ERR_MESSAGE_UNKNOWN_TYPE')
    }
    refuses(() => paymentCodecs.fromBuyer.decode(samples[9][0].encode(samples[9][1])), 'ERR_MESSAGE_UNKNOWN_TYPE')
    refuses(() => relayCodecs.fromSeller.decode(samples[13][0].encode(samples[13][1])), 'ERR_MESSAGE_UNKNOWN_TYPE')
    refuses(() => paymentCodecs.fromBuyer.encode({ v: 1, type: 'usage' } as any), 'ERR_MESSAGE_UNKNOWN_TYPE')
  })

  it('refuse extra keys, prototype-pollution keys included, and leave Object.prototype alone', () => {
    for (const json of [
      '{"v":1,"type":"connected","extra":1}',
      '{"v":1,"type":"connected","__proto__":{"polluted":true}}',
      '{"v":1,"type":"connected","constructor":{"prototype":{"polluted":true}}}'
    ]) {
      refuses(() => relayCodecs.fromSeller.decode(utf8.encode(json)), 'ERR_MESSAGE_SCHEMA')
    }
    refuses(() => decodeChanged(4, (wire) => { Object.defineProperty(wire.channel, '__proto__', { value: { polluted: true }, enumerable: true }) }), 'ERR_MESSAGE_SCHEMA')
    assert.equal(({} as any).polluted, undefined)
  })

  it('refuse missing fields', () => {
    refuses(() => decodeChanged(9, (wire) => { delete wire.amountDue }), 'ERR_MESSAGE_SCHEMA')
    refuses(() => decodeChanged(5, (wire) => { delete wire.voucher.signature }), 'ERR_MESSAGE_SCHEMA')
  })

  it('accept only canonical decimal strings within the field\'s range', () => {
    const usage = (amountDue: unknown) => decodeChanged(9, (wire) => { wire.amountDue = amountDue })
    const bytes = (cumulativeBytes: unknown) => decodeChanged(9, (wire) => { wire.cumulativeBytes = cumulativeBytes })
    assert.equal((usage(MAX_VOUCHER_AMOUNT.toString()) as any).amountDue, MAX_VOUCHER_AMOUNT)
    assert.equal((usage('0') as any).amountDue, 0n)
    for (const bad of [(MAX_VOUCHER_AMOUNT + 1n).toString(), '01', '-1', '1e3', '1.0', ' 1', '0x10', '', '9'.repeat(79), 1000, null]) {
      refuses(() => usage(bad), 'ERR_MESSAGE_SCHEMA')
    }
    assert.equal((bytes(MAX_VOUCHER_BYTES.toString()) as any).cumulativeBytes, MAX_VOUCHER_BYTES)
    refuses(() => bytes((MAX_VOUCHER_BYTES + 1n).toString()), 'ERR_MESSAGE_SCHEMA')
  })

  it('accept only safe non-negative integers for sequence numbers and chain ids', () => {
    for (const bad of [-1, 1.5, 2 ** 53, '7', 1e300]) {
      refuses(() => decodeChanged(9, (wire) => { wire.seq = bad }), 'ERR_MESSAGE_SCHEMA')
    }
    refuses(() => decodeChanged(4, (wire) => { wire.channel.chainId = 0 }), 'ERR_MESSAGE_SCHEMA')
    refuses(() => paymentCodecs.fromSeller.decode(utf8.encode('{"v":1,"type":"usage","seq":1e400,"cumulativeBytes":"1","amountDue":"1"}')), 'ERR_MESSAGE_SCHEMA')
  })

  it('accept only EVM addresses with a valid checksum when mixed-case', () => {
    decodeChanged(4, (wire) => { wire.channel.payee = ADDRESS.toLowerCase() })
    const badChecksum = ADDRESS.replace('C', 'c')
    assert.notEqual(badChecksum, ADDRESS)
    refuses(() => decodeChanged(4, (wire) => { wire.channel.payee = badChecksum }), 'ERR_MESSAGE_SCHEMA')
    refuses(() => decodeChanged(4, (wire) => { wire.channel.payee = ADDRESS.slice(0, 41) }), 'ERR_MESSAGE_SCHEMA')
  })

  it('accept only hex of the right length for channel ids, salts, signatures and session ids', () => {
    refuses(() => decodeChanged(4, (wire) => { wire.channel.salt = BYTES32.slice(0, 64) }), 'ERR_MESSAGE_SCHEMA')
    refuses(() => decodeChanged(5, (wire) => { wire.voucher.signature = `${SIGNATURE}00` }), 'ERR_MESSAGE_SCHEMA')
    refuses(() => decodeChanged(5, (wire) => { wire.voucher.channelId = `0x${'zz'.repeat(32)}` }), 'ERR_MESSAGE_SCHEMA')
    refuses(() => decodeChanged(13, (wire) => { wire.sessionId = SESSION.toUpperCase() }), 'ERR_MESSAGE_SCHEMA')
    refuses(() => decodeChanged(13, (wire) => { wire.sessionId = SESSION.slice(1) }), 'ERR_MESSAGE_SCHEMA')
  })

  it('bound texts, codes and lists', () => {
    decodeChanged(15, (wire) => { wire.message = 'x'.repeat(256) })
    refuses(() => decodeChanged(15, (wire) => { wire.message = 'x'.repeat(257) }), 'ERR_MESSAGE_SCHEMA')
    refuses(() => decodeChanged(15, (wire) => { wire.code = 'EXIT_POLICY' }), 'ERR_MESSAGE_SCHEMA')
    const manyTokens = Array.from({ length: 17 }, () => ({ token: zeroAddress, pricePerGiB: '1' }))
    refuses(() => decodeChanged(2, (wire) => { wire.offer.tokens = manyTokens }), 'ERR_MESSAGE_SCHEMA')
    refuses(() => decodeChanged(2, (wire) => { wire.offer.listenAddrs = Array(17).fill('/ip4/1.2.3.4/tcp/1') }), 'ERR_MESSAGE_SCHEMA')
    refuses(() => decodeChanged(2, (wire) => { wire.offer.services = ['relay', 'relay'] }), 'ERR_MESSAGE_SCHEMA')
    refuses(() => decodeChanged(2, (wire) => { wire.offer.services = ['vpn'] }), 'ERR_MESSAGE_SCHEMA')
  })

  it('refuse deep nesting without exhausting the stack', () => {
    const deep = '['.repeat(3000) + ']'.repeat(3000)
    refuses(() => offerCodecs.fromSeller.decode(utf8.encode(`{"v":1,"type":"offer","offer":${deep}}`)), 'ERR_MESSAGE_SCHEMA')
    refuses(() => offerCodecs.fromSeller.decode(utf8.encode('['.repeat(16_000))), 'ERR_MESSAGE_MALFORMED')
  })

  it('refuse to encode what they would refuse to decode', () => {
    const [codec, usage] = samples[9]
    refuses(() => codec.encode({ ...usage, amountDue: -1n }), 'ERR_MESSAGE_SCHEMA')
    refuses(() => codec.encode({ ...usage, amountDue: MAX_VOUCHER_AMOUNT + 1n }), 'ERR_MESSAGE_SCHEMA')
    refuses(() => codec.encode({ ...usage, amountDue: 5 }), 'ERR_MESSAGE_SCHEMA')
    refuses(() => codec.encode({ ...usage, extra: true }), 'ERR_MESSAGE_SCHEMA')
    refuses(() => codec.encode({ ...usage, v: 2 }), 'ERR_MESSAGE_SCHEMA')
  })

  it('build only from schemas whose type and version match their key', () => {
    const schemas = { note: messageSchema(1, 'other', {}) }
    assert.throws(() => messageCodec({ protocol: '/test/1.0.0', version: 1, maxMessageBytes: 100, schemas }), TypeError)
    assert.throws(() => messageCodec({ protocol: '/test/1.0.0', version: 2, maxMessageBytes: 100, schemas: { note: messageSchema(1, 'note', {}) } }), TypeError)
    assert.throws(() => messageCodec({ protocol: '/test/1.0.0', version: 1, maxMessageBytes: 100, schemas: { note: Type.Object({}) } }), TypeError)
  })
})

describe('relay target host', () => {
  const valid = ['example.com', 'EXAMPLE.com.', 'a-b.c_d.example', 'xn--bcher-kva.example', 'localhost', '_sip._tcp.example.com',
    `${Array(4).fill('a'.repeat(61)).join('.')}.abcde`, `${Array(4).fill('a'.repeat(61)).join('.')}.abcde.`, `${'a'.repeat(63)}.com`, '1.2.3.4', '255.255.255.255', '::1', '2001:db8::1', '::ffff:127.0.0.1']
  const invalid = ['', '.', 'example..com', '.example.com', '-a.com', 'a-.com', 'a.-com', `${'a'.repeat(64)}.com`, `${Array(4).fill('a'.repeat(61)).join('.')}.abcdef`,
    '127.1', '0x7f.0.0.1', '2130706433', '01.2.3.4', '1.2.3.256', '1.2.3.4.5', 'example.123', '[::1]', 'fe80::1%eth0', '1::2::3',
    'exa mple.com', 'example.com:80', 'user@example.com', 'bücher.de', 'example.com\n', 'a/b']

  for (const host of valid) {
    it(`accepts ${JSON.stringify(host.length > 40 ? `${host.slice(0, 20)}…(${host.length})` : host)}`, () => {
      assert.ok(isRelayHost(host))
      decodeChanged(13, (wire) => { wire.host = host })
    })
  }
  for (const host of invalid) {
    it(`refuses ${JSON.stringify(host.length > 40 ? `${host.slice(0, 20)}…(${host.length})` : host)}`, () => {
      assert.equal(isRelayHost(host), false)
      refuses(() => decodeChanged(13, (wire) => { wire.host = host }), 'ERR_MESSAGE_SCHEMA')
    })
  }

  it('refuses ports outside 1..65535', () => {
    decodeChanged(13, (wire) => { wire.port = 1 })
    decodeChanged(13, (wire) => { wire.port = 65535 })
    for (const port of [0, 65536, -1, 443.5, '443']) {
      refuses(() => decodeChanged(13, (wire) => { wire.port = port }), 'ERR_MESSAGE_SCHEMA')
    }
  })
})

describe('fuzzing', () => {
  /** mulberry32: a small seeded PRNG, so that a failure can be replayed. */
  function prng (seed: number): () => number {
    return () => {
      seed = (seed + 0x6d2b79f5) | 0
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296
    }
  }

  const SNIPPETS = ['"__proto__":{"polluted":true},', '"constructor":{"prototype":{"polluted":true}},', '1e999', '-1e999', '-0', 'NaN', 'Infinity',
    'null', '[]', '{}', '"\\u0000"', '"\\ud800"', '99999999999999999999999999999999999999', '"-1"', '"01"', 'true', '"v":2,', '"type":"close",',
    '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[', '}}}}}}}}', '\u0000', '\ufeff', '😀', '"', '\\', ',', ':']

  it('let only ProtocolMessageError escape, 5,000 seeded inputs through every codec', () => {
    const random = prng(0x5eed)
    const int = (n: number) => Math.floor(random() * n)
    const pick = <T>(items: readonly T[]): T => items[int(items.length)]
    const encoded = samples.map(([codec, message]) => codec.encode(message))
    const weird = (): unknown => pick([null, true, -1, 0.5, 2 ** 64, Number.MAX_SAFE_INTEGER + 2, '', 'x'.repeat(300), '__proto__', [], [[[]]], {}, { __proto__: null }, '0'.repeat(80), '-0', '1e3', 'ERR_X'])

    function mutateBytes (bytes: Uint8Array): Uint8Array {
      const out = [...bytes]
      for (let n = 1 + int(4); n > 0; n--) {
        const at = int(out.length + 1)
        switch (int(5)) {
          case 0: out[at] = int(256); break
          case 1: out.splice(at, 0, pick([0xff, 0xc0, 0x80, 0xed, 0x00, 0x22, 0x5c])); break
          case 2: out.splice(at, 1 + int(8)); break
          case 3: out.length = at; break
          default: out.splice(at, 0, ...utf8.encode(pick(SNIPPETS)))
        }
      }
      return new Uint8Array(out)
    }

    function mutateStructure (value: any): string {
      const wire = structuredClone(value)
      let node = wire
      for (let depth = int(3); depth > 0; depth--) {
        const keys = Object.keys(node).filter((k) => typeof node[k] === 'object' && node[k] !== null)
        if (keys.length === 0) break
        node = node[pick(keys)]
      }
      const keys = Object.keys(node)
      switch (int(3)) {
        case 0: node[pick(keys)] = weird(); break
        case 1: delete node[pick(keys)]; break
        default: Object.defineProperty(node, pick(['__proto__', 'constructor', 'extra', 'toString']), { value: weird(), enumerable: true, writable: true })
      }
      return JSON.stringify(wire)
    }

    const seen = new Map<string, number>()
    let accepted = 0
    for (let i = 0; i < 5000; i++) {
      let input: Uint8Array
      const source = int(4)
      const sample = int(samples.length)
      if (source === 0) input = Uint8Array.from({ length: int(2) === 0 ? int(64) : int(20_000) }, () => int(256))
      else if (source === 1) input = mutateBytes(encoded[sample])
      else if (source === 2) input = utf8.encode(mutateStructure(wireOf(samples[sample][0], samples[sample][1])))
      else input = mutateBytes(utf8.encode(mutateStructure(wireOf(samples[sample][0], samples[sample][1]))))

      for (const codec of allCodecs) {
        let decoded: unknown
        try {
          decoded = codec.decode(input)
        } catch (err) {
          if (!(err instanceof ProtocolMessageError) || !ERROR_CODES.has(err.code)) {
            assert.fail(`iteration ${i}: ${codec.protocol} threw ${String(err)} for ${JSON.stringify(text.decode(input))}`)
          }
          assert.ok(err.message.length < 512, 'errors do not echo large peer input')
          seen.set(err.code, (seen.get(err.code) ?? 0) + 1)
          continue
        }
        accepted++
        assert.deepEqual(codec.decode(codec.encode(decoded)), decoded, `iteration ${i}: accepted input must re-encode`)
      }
    }
    assert.equal(({} as any).polluted, undefined)
    assert.equal(Object.getOwnPropertyNames(Object.prototype).includes('polluted'), false)
    // the fuzzer reached every refusal path and also produced inputs that are still valid
    for (const code of ERROR_CODES) assert.ok((seen.get(code) ?? 0) > 0, `fuzzing never produced ${code}`)
    assert.ok(accepted > 0)
  })
})
