/**
 * Test helper: starts spareband libp2p nodes on loopback and stops every one
 * of them at the end of the suite.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createNode, type CreateNodeInit, type SparebandNode } from '../../daemon/node/create-node.ts'
import type { Libp2p, ServiceMap } from '@libp2p/interface'

/** Nodes started by one suite; `stopAll()` in `after`. */
export class NodeSet {
  private readonly nodes = new Set<Libp2p<any>>()

  /** Starts a node on 127.0.0.1 with a fresh Ed25519 key unless `init.privateKey` is given. */
  async start<S extends ServiceMap = ServiceMap> (init: Partial<CreateNodeInit<S>> = {}): Promise<SparebandNode<S>> {
    const node = await createNode<S>({ ...init, privateKey: init.privateKey ?? await generateKeyPair('Ed25519') })
    this.nodes.add(node)
    return node
  }

  /** The nodes still running. */
  running (): Array<Libp2p<any>> {
    return [...this.nodes]
  }

  /** Stops one node now. */
  async stop (node: Libp2p<any>): Promise<void> {
    this.nodes.delete(node)
    await node.stop()
  }

  /** Stops every node still running. */
  async stopAll (): Promise<void> {
    const nodes = [...this.nodes]
    this.nodes.clear()
    await Promise.all(nodes.map(async (node) => node.stop()))
  }
}

/** The first listen address of `node` with its `/p2p/` suffix, for bootstrap lists. */
export function dialAddress (node: Libp2p<any>): string {
  const addr = node.getMultiaddrs()[0]
  if (addr == null) throw new Error('node has no listen address')
  return addr.toString()
}

/** Waits until `check()` is true, polling every 10 ms, or throws after `timeoutMs`. */
export async function waitFor (check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
