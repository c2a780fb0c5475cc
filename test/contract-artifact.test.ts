/**
 * The committed contract artifacts (JSON and the generated TypeScript module) are exactly what
 * solc produces from the committed sources, so a source edit without `npm run
 * compile-contract` fails here.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { spareChannelsAbi, spareChannelsBytecode } from '../protocol/contract/artifact.ts'
import { COMPILE_TARGETS, REPO_ROOT, compileTarget, staleArtifacts } from '../scripts/compile-contract.ts'

const channelsTarget = COMPILE_TARGETS[0]

describe('contract artifacts', () => {
  it('every committed artifact matches a fresh compile (`npm run compile-contract -- --check`)', () => {
    assert.deepEqual(staleArtifacts(), [], 'run `npm run compile-contract` and commit the result')
  })

  it('a changed source no longer matches the committed artifact', () => {
    const source = readFileSync(join(REPO_ROOT, channelsTarget.source), 'utf8')
    const committed = readFileSync(join(REPO_ROOT, channelsTarget.artifact), 'utf8')
    const changed = compileTarget(channelsTarget, source.replace('uint256 private constant RECORD_BYTES = 116;', 'uint256 private constant RECORD_BYTES = 117;'))
    assert.notEqual(changed.artifactJson, committed)
    assert.notEqual(changed.moduleTs, readFileSync(join(REPO_ROOT, channelsTarget.module), 'utf8'))
  })

  it('the TypeScript module exports the ABI and bytecode of the JSON artifact', () => {
    const json = JSON.parse(readFileSync(join(REPO_ROOT, channelsTarget.artifact), 'utf8'))
    assert.deepEqual(spareChannelsAbi, json.contracts.SpareChannels.abi)
    assert.equal(spareChannelsBytecode, json.contracts.SpareChannels.bytecode)
  })
})
