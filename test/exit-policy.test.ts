import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { checkExit, exitPolicy, type ExitPolicy, type ExitRefusalCode } from '../protocol/exit-policy.ts'

type Expected = ExitRefusalCode | 'allowed'

/** Checks every `[address, expected]` row on port 443 against `policy`, reporting all mismatches at once. */
function table (rows: ReadonlyArray<readonly [string, Expected]>, policy: ExitPolicy = exitPolicy(), port = 443): void {
  const wrong: string[] = []
  for (const [address, expected] of rows) {
    const decision = checkExit(address, port, policy)
    const got = decision.allowed ? 'allowed' : decision.code
    if (got !== expected) wrong.push(`${address}:${port} → ${got}, expected ${expected}`)
    if (!decision.allowed) assert.ok(decision.reason.length > 0)
  }
  assert.deepEqual(wrong, [])
}

describe('exit policy: IPv4 special-purpose ranges (edges just inside and just outside)', () => {
  it('"this network" 0.0.0.0/8', () => table([
    ['0.0.0.0', 'ERR_EXIT_UNSPECIFIED'], ['0.255.255.255', 'ERR_EXIT_UNSPECIFIED'], ['1.0.0.0', 'allowed']
  ]))
  it('private 10.0.0.0/8', () => table([
    ['9.255.255.255', 'allowed'], ['10.0.0.0', 'ERR_EXIT_PRIVATE'], ['10.255.255.255', 'ERR_EXIT_PRIVATE'], ['11.0.0.0', 'allowed']
  ]))
  it('carrier-grade NAT 100.64.0.0/10', () => table([
    ['100.63.255.255', 'allowed'], ['100.64.0.0', 'ERR_EXIT_CGNAT'], ['100.127.255.255', 'ERR_EXIT_CGNAT'], ['100.128.0.0', 'allowed']
  ]))
  it('loopback 127.0.0.0/8', () => table([
    ['126.255.255.255', 'allowed'], ['127.0.0.0', 'ERR_EXIT_LOOPBACK'], ['127.0.0.1', 'ERR_EXIT_LOOPBACK'], ['127.255.255.255', 'ERR_EXIT_LOOPBACK'], ['128.0.0.0', 'allowed']
  ]))
  it('link-local 169.254.0.0/16 (cloud metadata lives here)', () => table([
    ['169.253.255.255', 'allowed'], ['169.254.0.0', 'ERR_EXIT_LINK_LOCAL'], ['169.254.169.254', 'ERR_EXIT_LINK_LOCAL'], ['169.254.255.255', 'ERR_EXIT_LINK_LOCAL'], ['169.255.0.0', 'allowed']
  ]))
  it('private 172.16.0.0/12', () => table([
    ['172.15.255.255', 'allowed'], ['172.16.0.0', 'ERR_EXIT_PRIVATE'], ['172.31.255.255', 'ERR_EXIT_PRIVATE'], ['172.32.0.0', 'allowed']
  ]))
  it('IETF protocol assignments 192.0.0.0/24', () => table([
    ['191.255.255.255', 'allowed'], ['192.0.0.0', 'ERR_EXIT_RESERVED'], ['192.0.0.255', 'ERR_EXIT_RESERVED'], ['192.0.1.0', 'allowed']
  ]))
  it('documentation 192.0.2.0/24', () => table([
    ['192.0.1.255', 'allowed'], ['192.0.2.0', 'ERR_EXIT_RESERVED'], ['192.0.2.255', 'ERR_EXIT_RESERVED'], ['192.0.3.0', 'allowed']
  ]))
  it('deprecated 6to4 relay anycast 192.88.99.0/24', () => table([
    ['192.88.98.255', 'allowed'], ['192.88.99.0', 'ERR_EXIT_RESERVED'], ['192.88.99.255', 'ERR_EXIT_RESERVED'], ['192.88.100.0', 'allowed']
  ]))
  it('private 192.168.0.0/16', () => table([
    ['192.167.255.255', 'allowed'], ['192.168.0.0', 'ERR_EXIT_PRIVATE'], ['192.168.255.255', 'ERR_EXIT_PRIVATE'], ['192.169.0.0', 'allowed']
  ]))
  it('benchmarking 198.18.0.0/15', () => table([
    ['198.17.255.255', 'allowed'], ['198.18.0.0', 'ERR_EXIT_RESERVED'], ['198.19.255.255', 'ERR_EXIT_RESERVED'], ['198.20.0.0', 'allowed']
  ]))
  it('documentation 198.51.100.0/24', () => table([
    ['198.51.99.255', 'allowed'], ['198.51.100.0', 'ERR_EXIT_RESERVED'], ['198.51.100.255', 'ERR_EXIT_RESERVED'], ['198.51.101.0', 'allowed']
  ]))
  it('documentation 203.0.113.0/24', () => table([
    ['203.0.112.255', 'allowed'], ['203.0.113.0', 'ERR_EXIT_RESERVED'], ['203.0.113.255', 'ERR_EXIT_RESERVED'], ['203.0.114.0', 'allowed']
  ]))
  it('multicast 224.0.0.0/4', () => table([
    ['223.255.255.255', 'allowed'], ['224.0.0.0', 'ERR_EXIT_MULTICAST'], ['239.255.255.255', 'ERR_EXIT_MULTICAST']
  ]))
  it('reserved 240.0.0.0/4 and limited broadcast', () => table([
    ['240.0.0.0', 'ERR_EXIT_RESERVED'], ['255.255.255.254', 'ERR_EXIT_RESERVED'], ['255.255.255.255', 'ERR_EXIT_BROADCAST']
  ]))
  it('ordinary public addresses are allowed', () => table([
    ['8.8.8.8', 'allowed'], ['1.1.1.1', 'allowed'], ['93.184.216.34', 'allowed']
  ]))
})

describe('exit policy: IPv6 special-purpose ranges', () => {
  it('unspecified and loopback', () => table([
    ['::', 'ERR_EXIT_UNSPECIFIED'], ['::1', 'ERR_EXIT_LOOPBACK'], ['0:0:0:0:0:0:0:1', 'ERR_EXIT_LOOPBACK']
  ]))
  it('unique local fc00::/7', () => table([
    ['fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'ERR_EXIT_RESERVED'], ['fc00::', 'ERR_EXIT_PRIVATE'], ['fd12:3456::1', 'ERR_EXIT_PRIVATE'],
    ['fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'ERR_EXIT_PRIVATE'], ['fe00::', 'ERR_EXIT_RESERVED']
  ]))
  it('link-local fe80::/10, with and without a zone', () => table([
    ['fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'ERR_EXIT_RESERVED'], ['fe80::', 'ERR_EXIT_LINK_LOCAL'], ['fe80::1%eth0', 'ERR_EXIT_LINK_LOCAL'],
    ['febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'ERR_EXIT_LINK_LOCAL']
  ]))
  it('deprecated site-local fec0::/10 counts as private', () => table([
    ['fec0::', 'ERR_EXIT_PRIVATE'], ['feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'ERR_EXIT_PRIVATE']
  ]))
  it('multicast ff00::/8', () => table([
    ['ff00::', 'ERR_EXIT_MULTICAST'], ['ff02::1', 'ERR_EXIT_MULTICAST'], ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'ERR_EXIT_MULTICAST']
  ]))
  it('documentation 2001:db8::/32', () => table([
    ['2001:db7:ffff:ffff:ffff:ffff:ffff:ffff', 'allowed'], ['2001:db8::', 'ERR_EXIT_RESERVED'],
    ['2001:db8:ffff:ffff:ffff:ffff:ffff:ffff', 'ERR_EXIT_RESERVED'], ['2001:db9::', 'allowed']
  ]))
  it('documentation 3fff::/20', () => table([
    ['3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'allowed'], ['3fff::', 'ERR_EXIT_RESERVED'],
    ['3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff', 'ERR_EXIT_RESERVED'], ['3fff:1000::', 'allowed']
  ]))
  it('IETF protocol assignments 2001::/23 (benchmarking, ORCHID, AMT), Teredo aside', () => table([
    ['2001:1::1', 'ERR_EXIT_RESERVED'], ['2001:2::1', 'ERR_EXIT_RESERVED'], ['2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff', 'ERR_EXIT_RESERVED'],
    ['2001:200::', 'allowed'], ['2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'allowed']
  ]))
  it('everything outside global unicast 2000::/3 (discard-only, local-use NAT64, SRv6, unassigned)', () => table([
    ['1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'ERR_EXIT_RESERVED'], ['2000::', 'allowed'],
    ['3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'allowed'], ['4000::', 'ERR_EXIT_RESERVED'],
    ['100::1', 'ERR_EXIT_RESERVED'], ['64:ff9b:1::808:808', 'ERR_EXIT_RESERVED'], ['5f00::1', 'ERR_EXIT_RESERVED'], ['::1:0:0:1', 'ERR_EXIT_RESERVED']
  ]))
  it('ordinary public addresses are allowed', () => table([
    ['2001:4860:4860::8888', 'allowed'], ['2606:4700:4700::1111', 'allowed'], ['2a00:1450:4001:800::200e', 'allowed']
  ]))
})

describe('exit policy: IPv6 forms that embed an IPv4 address are judged by it', () => {
  it('IPv4-mapped ::ffff:0:0/96, dotted and hex', () => table([
    ['::ffff:8.8.8.8', 'allowed'], ['::ffff:808:808', 'allowed'],
    ['::ffff:127.0.0.1', 'ERR_EXIT_LOOPBACK'], ['::ffff:7f00:1', 'ERR_EXIT_LOOPBACK'], ['0:0:0:0:0:ffff:7f00:1', 'ERR_EXIT_LOOPBACK'],
    ['::ffff:10.0.0.1', 'ERR_EXIT_PRIVATE'], ['::ffff:169.254.169.254', 'ERR_EXIT_LINK_LOCAL'], ['::ffff:100.64.0.1', 'ERR_EXIT_CGNAT'],
    ['::ffff:224.0.0.1', 'ERR_EXIT_MULTICAST'], ['::ffff:0.0.0.0', 'ERR_EXIT_UNSPECIFIED'], ['::ffff:255.255.255.255', 'ERR_EXIT_BROADCAST'],
    ['::ffff:192.0.2.1', 'ERR_EXIT_RESERVED']
  ]))
  it('IPv4-compatible ::/96', () => table([
    ['::8.8.8.8', 'allowed'], ['::127.0.0.1', 'ERR_EXIT_LOOPBACK'], ['::a00:1', 'ERR_EXIT_PRIVATE'], ['::2', 'ERR_EXIT_UNSPECIFIED']
  ]))
  it('IPv4-translated ::ffff:0:0:0/96', () => table([
    ['::ffff:0:8.8.8.8', 'allowed'], ['::ffff:0:127.0.0.1', 'ERR_EXIT_LOOPBACK'], ['::ffff:0:192.168.1.1', 'ERR_EXIT_PRIVATE']
  ]))
  it('NAT64 64:ff9b::/96', () => table([
    ['64:ff9b::8.8.8.8', 'allowed'], ['64:ff9b::127.0.0.1', 'ERR_EXIT_LOOPBACK'], ['64:ff9b::a00:1', 'ERR_EXIT_PRIVATE'],
    ['64:ff9b::169.254.169.254', 'ERR_EXIT_LINK_LOCAL'], ['64:ff9b::100.64.0.1', 'ERR_EXIT_CGNAT'], ['64:ff9b:0:0:1::', 'ERR_EXIT_RESERVED']
  ]))
  it('6to4 2002::/16', () => table([
    ['2002:808:808::1', 'allowed'], ['2002:7f00:1::1', 'ERR_EXIT_LOOPBACK'], ['2002:c0a8:101::1', 'ERR_EXIT_PRIVATE'],
    ['2002:a9fe:a9fe::', 'ERR_EXIT_LINK_LOCAL'], ['2002:e000:1::', 'ERR_EXIT_MULTICAST']
  ]))
  it('Teredo 2001::/32: server and (inverted) client addresses', () => table([
    // server 65.54.227.120, client 8.8.8.8 (stored inverted as f7f7:f7f7)
    ['2001:0:4136:e378:8000:63bf:f7f7:f7f7', 'allowed'],
    // RFC 4380's example: client 192.0.2.45 is documentation space
    ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'ERR_EXIT_RESERVED'],
    // client 127.0.0.1
    ['2001:0:4136:e378:8000:63bf:80ff:fffe', 'ERR_EXIT_LOOPBACK'],
    // server 10.0.0.1
    ['2001:0:a00:1:8000:63bf:f7f7:f7f7', 'ERR_EXIT_PRIVATE']
  ]))
})

describe('exit policy: ports', () => {
  it('denies SMTP (25) by default and nothing else', () => {
    const policy = exitPolicy()
    assert.equal(checkExit('8.8.8.8', 25, policy).allowed, false)
    table([['8.8.8.8', 'ERR_EXIT_PORT_DENIED'], ['2001:4860:4860::8888', 'ERR_EXIT_PORT_DENIED']], policy, 25)
    for (const port of [1, 22, 80, 443, 465, 587, 65535]) table([['8.8.8.8', 'allowed']], policy, port)
  })

  it('refuses ports that are not integers between 1 and 65535', () => {
    for (const port of [0, -1, 65536, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '443' as unknown as number]) {
      table([['8.8.8.8', 'ERR_EXIT_BAD_PORT']], exitPolicy(), port)
    }
  })

  it('follows a configured deny list, which replaces the default', () => {
    const policy = exitPolicy({ deniedPorts: [465, 587] })
    table([['8.8.8.8', 'ERR_EXIT_PORT_DENIED']], policy, 465)
    table([['8.8.8.8', 'ERR_EXIT_PORT_DENIED']], policy, 587)
    table([['8.8.8.8', 'allowed']], policy, 25)
  })

  it('with an allow list, connects only to the listed ports; the deny list still wins', () => {
    const policy = exitPolicy({ allowedPorts: [80, 443, 25] })
    table([['8.8.8.8', 'allowed']], policy, 80)
    table([['8.8.8.8', 'allowed']], policy, 443)
    table([['8.8.8.8', 'ERR_EXIT_PORT_NOT_ALLOWED']], policy, 22)
    table([['8.8.8.8', 'ERR_EXIT_PORT_DENIED']], policy, 25)
  })
})

describe('exit policy: own addresses, allow and deny lists', () => {
  it('refuses the node\'s own addresses in every spelling and embedding, even when allow-listed', () => {
    const policy = exitPolicy({ ownAddresses: ['8.8.4.4', '2001:4860:4860::8844'], allowCidrs: ['8.8.4.0/24', '2001:4860::/32'] })
    table([
      ['8.8.4.4', 'ERR_EXIT_OWN_ADDRESS'], ['::ffff:8.8.4.4', 'ERR_EXIT_OWN_ADDRESS'], ['64:ff9b::8.8.4.4', 'ERR_EXIT_OWN_ADDRESS'],
      ['2002:808:404::1', 'ERR_EXIT_OWN_ADDRESS'], ['2001:4860:4860:0:0:0:0:8844', 'ERR_EXIT_OWN_ADDRESS'],
      ['2001:4860:4860:0000::8844', 'ERR_EXIT_OWN_ADDRESS'], ['8.8.4.5', 'allowed'], ['2001:4860:4860::8888', 'allowed']
    ], policy)
  })

  it('an own address given in IPv4-mapped form matches the plain IPv4 address', () => {
    table([['8.8.4.4', 'ERR_EXIT_OWN_ADDRESS']], exitPolicy({ ownAddresses: ['::ffff:8.8.4.4'] }))
  })

  it('the allow list overrides built-in ranges, for IPv4, its embedded forms and IPv6', () => {
    const policy = exitPolicy({ allowCidrs: ['127.0.0.0/8', '192.168.1.0/24', 'fd00::/8'] })
    table([
      ['127.0.0.1', 'allowed'], ['127.255.0.9', 'allowed'], ['::ffff:127.0.0.1', 'allowed'], ['192.168.1.20', 'allowed'], ['fd00::5', 'allowed'],
      ['192.168.2.1', 'ERR_EXIT_PRIVATE'], ['10.0.0.1', 'ERR_EXIT_PRIVATE'], ['::1', 'ERR_EXIT_LOOPBACK'], ['fc00::1', 'ERR_EXIT_PRIVATE']
    ], policy)
  })

  it('the deny list refuses public addresses and their embedded forms, and wins over the allow list', () => {
    const policy = exitPolicy({ denyCidrs: ['8.8.8.0/24', '10.1.0.0/16', '2001:4860::/32'], allowCidrs: ['10.0.0.0/8'] })
    table([
      ['8.8.8.8', 'ERR_EXIT_DENY_LIST'], ['::ffff:8.8.8.8', 'ERR_EXIT_DENY_LIST'], ['64:ff9b::8.8.8.8', 'ERR_EXIT_DENY_LIST'],
      ['2001:4860:4860::8888', 'ERR_EXIT_DENY_LIST'], ['10.1.0.1', 'ERR_EXIT_DENY_LIST'], ['10.2.0.1', 'allowed'], ['8.8.9.1', 'allowed']
    ], policy)
  })
})

describe('exit policy: inputs', () => {
  it('refuses anything that is not a canonical IP literal: the exit must resolve names first', () => {
    table([
      ['localhost', 'ERR_EXIT_NOT_IP'], ['example.com', 'ERR_EXIT_NOT_IP'], ['', 'ERR_EXIT_NOT_IP'], ['1.2.3', 'ERR_EXIT_NOT_IP'],
      ['1.2.3.4.5', 'ERR_EXIT_NOT_IP'], ['0177.0.0.1', 'ERR_EXIT_NOT_IP'], ['0x7f.0.0.1', 'ERR_EXIT_NOT_IP'], ['127.1', 'ERR_EXIT_NOT_IP'],
      ['2130706433', 'ERR_EXIT_NOT_IP'], ['256.0.0.1', 'ERR_EXIT_NOT_IP'], ['[::1]', 'ERR_EXIT_NOT_IP'], [' 8.8.8.8', 'ERR_EXIT_NOT_IP'],
      ['8.8.8.8 ', 'ERR_EXIT_NOT_IP'], ['8.8.8.8/32', 'ERR_EXIT_NOT_IP'], ['::ffff:1.2.3', 'ERR_EXIT_NOT_IP'], ['1:2:3:4:5:6:7:8:9', 'ERR_EXIT_NOT_IP']
    ])
    for (const notAString of [undefined, null, 2130706433, {}]) {
      const decision = checkExit(notAString as unknown as string, 443, exitPolicy())
      assert.equal(decision.allowed ? 'allowed' : decision.code, 'ERR_EXIT_NOT_IP')
    }
  })

  it('refuses a policy that does not parse, at construction', () => {
    const invalid = [
      { allowCidrs: ['10.0.0.0'] }, { allowCidrs: ['10.0.0.0/33'] }, { denyCidrs: ['::/129'] }, { denyCidrs: ['example.com/8'] },
      { denyCidrs: ['10.0.0.0/-1'] }, { ownAddresses: ['my-router'] }, { deniedPorts: [0] }, { allowedPorts: [70000] }
    ]
    for (const options of invalid) {
      assert.throws(() => exitPolicy(options), { code: 'ERR_INVALID_EXIT_POLICY' }, JSON.stringify(options))
    }
  })
})
