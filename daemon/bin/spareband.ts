#!/usr/bin/env node
/**
 * The `spareband` command line. Each command lives in `daemon/cli/commands/`;
 * errors with a stable code are printed as `code: message` and exit 1.
 */
import { Command } from 'commander'
import { SparebandError } from '../../protocol/errors.ts'
import { devnetCommand } from '../cli/commands/devnet.ts'
import { startCommand } from '../cli/commands/start.ts'
import { initCommand } from '../cli/commands/init.ts'
import { statusCommand } from '../cli/commands/status.ts'
import { channelsCommand } from '../cli/commands/channels.ts'
import { earningsCommand } from '../cli/commands/earnings.ts'
import { settleCommand } from '../cli/commands/settle.ts'
import { fleetCommand } from '../cli/commands/fleet.ts'
import { connectCommand } from '../cli/commands/connect.ts'
import { offersCommand } from '../cli/commands/offers.ts'
import { demoCommand } from '../cli/commands/demo.ts'

const program = new Command('spareband')
  .description('sell spare uplink capacity peer to peer, or buy it (spareband connect)')
  .showHelpAfterError()

initCommand(program)
startCommand(program)
statusCommand(program)
channelsCommand(program)
earningsCommand(program)
settleCommand(program)
fleetCommand(program)
connectCommand(program)
offersCommand(program)
demoCommand(program)
devnetCommand(program)

try {
  await program.parseAsync(process.argv)
} catch (err) {
  if (err instanceof SparebandError) {
    process.stderr.write(`spareband: ${err.code}: ${err.message}\n`)
    process.exit(1)
  }
  throw err
}
