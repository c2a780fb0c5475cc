/** A small seeded PRNG (mulberry32) so randomized tests replay exactly from their seed. */
export class SeededRandom {
  #state: number

  constructor (seed: number) {
    this.#state = seed >>> 0
  }

  /** A float in [0, 1). */
  next (): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0
    let t = this.#state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }

  /** An integer in [0, max). */
  int (max: number): number {
    return Math.floor(this.next() * max)
  }

  /** A bigint in [0, max] (max below 2^53). */
  bigint (max: bigint): bigint {
    return BigInt(Math.floor(this.next() * (Number(max) + 1)))
  }

  /** True with probability `p`. */
  chance (p: number): boolean {
    return this.next() < p
  }
}
