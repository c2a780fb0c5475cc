/**
 * Kernel forwarding throughput client → gateway → upstream with spareband's table
 * (admission, per-client metering, NAT) against the bare namespace path (same
 * topology, no spareband table, the upstream routing the client subnet back), in the
 * same run. iperf3 (client and server pinned to one core each, first second
 * omitted), 2-second runs, alternating, medians. A third path, a plain masquerade
 * table with no spareband table, separates the cost of conntrack/NAT (which any NAT
 * router pays) from the cost of admission and metering. Prints one JSON line.
 * Target: ratio ≥ 0.95.
 */
import { execFileSync, spawn } from 'node:child_process'
import { pino } from 'pino'
import { createTopology, inNs } from '../test/hardware/netns.ts'
import { stopChild } from '../test/hardware/helpers.ts'
import { NftablesGateway } from '../hardware/nftables/gateway.ts'
import { commandRunner, netnsPrefix } from '../hardware/command.ts'

const PAIRS = 7
const SECONDS = 2

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
  const gateway = new NftablesGateway({ runner: commandRunner({ prefix: netnsPrefix(t.gateway) }), logger: pino({ level: 'silent' }), lanInterface: t.lanIf, wanInterface: t.wanIf })
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

  const NAT_ONLY = 'table ip natonly {\n chain post {\n  type nat hook postrouting priority srcnat; policy accept;\n  oifname "wan0" masquerade\n }\n}\n'
  const bare: number[] = []
  const natOnly: number[] = []
  const metered: number[] = []
  let counted = 0n
  for (let i = 0; i < PAIRS; i++) {
    bare.push(run())
    execFileSync('ip', ['netns', 'exec', t.gateway, 'nft', '-f', '-'], { input: NAT_ONLY })
    natOnly.push(run())
    execFileSync('ip', ['netns', 'exec', t.gateway, 'nft', 'delete', 'table', 'ip', 'natonly'])
    await gateway.start()
    await gateway.admit(client)
    metered.push(run())
    const final = await gateway.stop()
    counted += final.clients.find((c) => c.ip === client.ip)?.uploadBytes ?? 0n
    // stop restores ip_forward as start found it (on), so the bare path keeps forwarding.
  }
  if (counted === 0n) throw new Error('the metered runs were not counted: the table was not in the path')
  const MBps = median(metered)
  const baselineMBps = median(bare)
  const round = (x: number): number => Math.round(x * 100) / 100
  process.stdout.write(JSON.stringify({
    bench: 'gateway-forwarding',
    MBps: round(MBps),
    baselineMBps: round(baselineMBps),
    ratio: round(MBps / baselineMBps),
    natOnlyMBps: round(median(natOnly)),
    ratioVsNatOnly: round(MBps / median(natOnly)),
    runs: PAIRS,
    seconds: SECONDS,
    meteredRuns: metered.map(round),
    bareRuns: bare.map(round),
    natOnlyRuns: natOnly.map(round),
    targetRatio: 0.95,
    pass: MBps / baselineMBps >= 0.95
  }) + '\n')
} finally {
  await stopChild(server)
  t.destroy()
}
