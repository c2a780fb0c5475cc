import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { linkStatus } from '../../hardware/link.ts'
import { commandRunner } from '../../hardware/command.ts'
import { raspberrypiPlatform } from '../../hardware/platforms/raspberrypi.ts'
import { linuxPlatform } from '../../hardware/platforms/linux.ts'
import { CommandFailedError } from '../../hardware/errors.ts'

describe('platform facts on this machine', () => {
  it('systeminformation reports the loopback link; the configured capacity wins over the link speed', async () => {
    const s = await linkStatus('lo', { configuredCapacityBytesPerSec: 12_500_000, sampleMs: 200 })
    assert.equal(s.interface, 'lo')
    assert.equal(s.capacityBytesPerSec, 12_500_000)
    assert.ok(s.rxBytesPerSec >= 0 && s.txBytesPerSec >= 0)
  })

  it('the Raspberry Pi probe reports Wi-Fi as unavailable, with the reason, when NetworkManager is not there', async (t) => {
    const runner = commandRunner()
    if ((await runner(['sh', '-c', 'command -v nmcli'], { allowFailure: true })).exitCode === 0) {
      t.skip('nmcli is installed here; this checks the machine without it')
      return
    }
    const state = await raspberrypiPlatform({ runner }).wirelessState()
    assert.equal(state.supported, false)
    assert.match(state.reason ?? '', /NetworkManager is not usable/)
  })

  it('the generic Linux probe finds the default route interface and does not claim Wi-Fi', async () => {
    const probe = linuxPlatform({ runner: commandRunner() })
    const iface = await probe.uplinkInterface()
    assert.ok(iface === null || /^[\w.@-]+$/.test(iface))
    assert.equal((await probe.wirelessState()).supported, false)
  })

  it('the command runner reports a missing tool with what to do', async () => {
    await assert.rejects(commandRunner()(['spareband-no-such-tool']), (err: unknown) => err instanceof CommandFailedError && /Install `spareband-no-such-tool`/.test(err.message))
    await assert.rejects(commandRunner({ timeoutMs: 100 })(['sleep', '5']), /did not finish within 100 ms/)
  })
})
