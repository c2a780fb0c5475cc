/** A promise with its resolve and reject functions (`Promise.withResolvers`, which the project's ES2023 lib lacks). */
export interface Deferred<T> {
  promise: Promise<T>
  resolve: (value: T) => void
  reject: (reason: unknown) => void
}

/** Creates a {@link Deferred}. */
export function deferred<T> (): Deferred<T> {
  let resolve!: (value: T) => void
  let reject!: (reason: unknown) => void
  const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej })
  return { promise, resolve, reject }
}
