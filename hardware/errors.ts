import { SparebandError } from '../protocol/errors.ts'

/** Raised when a system command (nft, ip, ubus, uci, nmcli, …) is missing, fails or times out. */
export class CommandFailedError extends SparebandError {
  /** The argv that was run. */
  readonly argv: readonly string[]
  /** Exit code, or null when the command did not run to completion. */
  readonly exitCode: number | null
  /** What the command wrote to stderr (trimmed). */
  readonly stderr: string

  constructor (argv: readonly string[], exitCode: number | null, stderr: string, hint: string, options?: { cause?: unknown }) {
    super('ERR_COMMAND_FAILED', `\`${argv.join(' ')}\` failed${exitCode === null ? '' : ` with exit code ${exitCode}`}${stderr === '' ? '' : `: ${stderr}`}. ${hint}`, options)
    this.argv = argv
    this.exitCode = exitCode
    this.stderr = stderr
  }
}

/** Raised when a tool's output does not have the shape we parse (e.g. `nft -j`, `ip -j`, `ubus`, `nmcli -t`). */
export class UnexpectedOutputError extends SparebandError {
  constructor (tool: string, detail: string) {
    super('ERR_UNEXPECTED_OUTPUT', `unexpected output from ${tool}: ${detail}. Check that the installed ${tool} is supported by spareband and report the output if it is.`)
  }
}

/** Raised when a gateway client's IP or MAC address is malformed or not allowed. */
export class InvalidGatewayClientError extends SparebandError {
  constructor (message: string) {
    super('ERR_INVALID_GATEWAY_CLIENT', message)
  }
}

/** Raised when the hardware adapter's configuration is invalid (bad interface name, negative rate, …). */
export class AdapterConfigError extends SparebandError {
  constructor (message: string) {
    super('ERR_ADAPTER_CONFIG', message)
  }
}

/** Raised when the platform cannot do what was asked in its current state (not started, flow offloading on, …). */
export class AdapterStateError extends SparebandError {
  constructor (message: string) {
    super('ERR_ADAPTER_STATE', message)
  }
}
