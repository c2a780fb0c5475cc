/**
 * Kernel forwarding throughput client → gateway → upstream with spareband's table
 * (admission and per-client metering) against the bare namespace path (same
 * topology, no table at all, the upstream routing the client subnet back), in the
 * same run. The headline compares like with like: spareband on a routed LAN
 * (`masquerade: false`) against bare routing. NAT is a separate function that any NAT
 * router pays for with or without spareband, so a second pair compares spareband
 * with its own masquerade against a plain masquerade table; `natCostRatio` shows what
 * NAT itself costs against bare routing. iperf3 (client and server pinned to one core
 * each, first second omitted), 3-second runs; each round runs the four paths, starting
 * at a different one each round; medians. Prints one JSON line. Target: ratio ≥ 0.95
 * for both pairs.
 */
import { execFileSync, spawn } from 'node:child_process'
import { pino } from 'pino'
import { createTopology, inNs } from '../test/hardware/netns.ts'
import { stopChild } from '../test/hardware/helpers.ts'
import { NftablesGateway } from '../hardware/nftables/gateway.ts'
import { commandRunner, netnsPrefix } from '../hardware/command.ts'

const ROUNDS = 15
const SECONDS = 3

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

if (process.getuid?.() !== 0) {
  process.stderr.write('gateway-forwarding needs root (network namespaces and nftables)\n')
  process.exit(1)
}
execFileSync('iperf3', ['--version'], { stdio: 'ignore' })
const t = createTopology({ routeBack: true })
const server = spawn('ip', ['netns', 'exec', t.upstream, 'iperf3', '-s', '-A', '1', '-B', t.upstreamIp, '-p', '5401'], { stdio: 'ignore' })
try {
  inNs(t.gateway, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1')
  const gatewayFor = (masquerade: boolean): NftablesGateway => new NftablesGateway({ runner: commandRunner({ prefix: netnsPrefix(t.gateway) }), logger: pino({ level: 'silent' }), lanInterface: t.lanIf, wanInterface: t.wanIf, masquerade })
  const client = { ip: t.clientIp, mac: t.clientMac }

  const run = (): number => {
    for (let attempt = 0; ; attempt++) {
      try {
        const out = execFileSync('ip', ['netns', 'exec', t.client, 'iperf3', '-c', t.upstreamIp, '-p', '5401', '-A', '0', '-O', '1', '-t', String(SECONDS), '-J'], { encoding: 'utf8', timeout: (SECONDS + 11) * 1000 })
        const sum = (JSON.parse(out) as { end: { sum_received: { bytes: number, seconds: number } } }).end.sum_received
        return sum.bytes / 1e6 / sum.seconds
      } catch (err) {
        // The server may not listen yet on the first run.
        if (attempt >= 5) throw err
        execFileSync('sleep', ['0.3'])
      }
    }
  }
  const counted = { routed: 0n, nat: 0n }
  const metered = async (masquerade: boolean): Promise<number> => {
    const gateway = gatewayFor(masquerade)
    await gateway.start()
    await gateway.admit(client)
    const MBps = run()
    const final = await gateway.stop()
    // stop restores ip_forward as start found it (on), so the bare path keeps forwarding.
    counted[masquerade ? 'nat' : 'routed'] += final.clients.find((c) => c.ip === client.ip)?.uploadBytes ?? 0n
    return MBps
  }
  const NAT_ONLY = 'table ip natonly {\n chain post {\n  type nat hook postrouting priority srcnat; policy accept;\n  oifname "wan0" masquerade\n }\n}\n'
  const paths = {
    bare: async () => run(),
    metered: async () => await metered(false),
    natOnly: async () => {
      execFileSync('ip', ['netns', 'exec', t.gateway, 'nft', '-f', '-'], { input: NAT_ONLY })
      try { return run() } finally { execFileSync('ip', ['netns', 'exec', t.gateway, 'nft', 'delete', 'table', 'ip', 'natonly']) }
    },
    meteredNat: async () => await metered(true)
  }
  const names = Object.keys(paths) as Array<keyof typeof paths>
  const runs: Record<keyof typeof paths, number[]> = { bare: [], metered: [], natOnly: [], meteredNat: [] }
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < names.length; i++) {
      const name = names[(round + i) % names.length]
      runs[name].push(await paths[name]())
    }
  }
  if (counted.routed === 0n || counted.nat === 0n) throw new Error('the metered runs were not counted: the table was not in the path')
  const m = Object.fromEntries(names.map((n) => [n, median(runs[n])])) as Record<keyof typeof paths, number>
  const round = (x: number): number => Math.round(x * 1000) / 1000
  const ratio = m.metered / m.bare
  const natRatio = m.meteredNat / m.natOnly
  process.stdout.write(JSON.stringify({
    bench: 'gateway-forwarding',
    MBps: Math.round(m.metered),
    baselineMBps: Math.round(m.bare),
    ratio: round(ratio),
    nat: { MBps: Math.round(m.meteredNat), baselineMBps: Math.round(m.natOnly), ratio: round(natRatio) },
    natCostRatio: round(m.natOnly / m.bare),
    meteredNatVsBare: round(m.meteredNat / m.bare),
    rounds: ROUNDS,
    seconds: SECONDS,
    runsMBps: Object.fromEntries(names.map((n) => [n, runs[n].map(Math.round)])),
    targetRatio: 0.95,
    pass: ratio >= 0.95 && natRatio >= 0.95
  }) + '\n')
} finally {
  await stopChild(server)
  t.destroy()
}
