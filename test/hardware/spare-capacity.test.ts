import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { InvalidSharingPolicyError, spareCapacity, type CapacitySample, type SharingPolicy } from '../../hardware/spare-capacity.ts'

const policy: SharingPolicy = {
  timeZone: 'Europe/Berlin',
  schedule: null,
  bandwidthLimitBytesPerSec: null,
  monthlyCapBytes: null,
  capResetDay: 1,
  reserveFraction: 0.1
}
const sample: CapacitySample = { capacityBytesPerSec: 10_000_000, linkUseBytesPerSec: 2_000_000, soldUseBytesPerSec: 500_000, soldThisPeriodBytes: 0n }
// Wednesday 2025-01-15 12:00 in Berlin (UTC+1).
const wedNoon = Date.UTC(2025, 0, 15, 11, 0)

describe('spareCapacity', () => {
  it('is usable capacity minus current use', () => {
    const s = spareCapacity(policy, sample, wedNoon)
    assert.equal(s.spareBytesPerSec, 7_000_000)
    assert.equal(s.reason, 'available')
  })

  it('is bounded by the operator limit minus what buyers use now', () => {
    const s = spareCapacity({ ...policy, bandwidthLimitBytesPerSec: 2_000_000 }, sample, wedNoon)
    assert.equal(s.spareBytesPerSec, 1_500_000)
    assert.equal(spareCapacity({ ...policy, bandwidthLimitBytesPerSec: 400_000 }, sample, wedNoon).reason, 'limit-reached')
  })

  it('is zero when the link is busy, and zero without any capacity figure', () => {
    assert.equal(spareCapacity(policy, { ...sample, linkUseBytesPerSec: 9_500_000 }, wedNoon).reason, 'link-busy')
    const unknown = spareCapacity(policy, { ...sample, capacityBytesPerSec: null }, wedNoon)
    assert.equal(unknown.spareBytesPerSec, 0)
    assert.equal(unknown.reason, 'unknown-capacity')
    assert.equal(spareCapacity({ ...policy, bandwidthLimitBytesPerSec: 1_000_000 }, { ...sample, capacityBytesPerSec: null }, wedNoon).spareBytesPerSec, 500_000)
  })

  it('follows the schedule in the operator\'s time zone', () => {
    const weekdaysDay = { ...policy, schedule: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri'] as const, start: '09:00', end: '17:00' }].map((w) => ({ ...w, days: [...w.days] })) }
    assert.equal(spareCapacity(weekdaysDay, sample, wedNoon).sharing, true)
    // 08:30 Berlin is 07:30 UTC: outside, though 09:00 UTC would be inside.
    assert.equal(spareCapacity(weekdaysDay, sample, Date.UTC(2025, 0, 15, 7, 30)).reason, 'outside-schedule')
    // The same instant in New York is 06:00: outside.
    assert.equal(spareCapacity({ ...weekdaysDay, timeZone: 'America/New_York' }, sample, wedNoon).sharing, false)
    // Saturday noon: outside.
    assert.equal(spareCapacity(weekdaysDay, sample, Date.UTC(2025, 0, 18, 11, 0)).sharing, false)
  })

  it('handles windows past midnight, attributed to the day they start', () => {
    const nights = { ...policy, schedule: [{ days: ['fri' as const], start: '22:00', end: '06:00' }] }
    assert.equal(spareCapacity(nights, sample, Date.UTC(2025, 0, 17, 22, 0)).sharing, true, 'Friday 23:00')
    assert.equal(spareCapacity(nights, sample, Date.UTC(2025, 0, 18, 4, 0)).sharing, true, 'Saturday 05:00 belongs to Friday night')
    assert.equal(spareCapacity(nights, sample, Date.UTC(2025, 0, 18, 5, 30)).sharing, false, 'Saturday 06:30')
    assert.equal(spareCapacity(nights, sample, Date.UTC(2025, 0, 16, 22, 0)).sharing, false, 'Thursday 23:00')
    const always = { ...policy, schedule: [{ days: ['wed' as const], start: '00:00', end: '24:00' }] }
    assert.equal(spareCapacity(always, sample, wedNoon).sharing, true)
  })

  it('stops at the monthly cap and computes the period in local time across DST', () => {
    const capped = { ...policy, monthlyCapBytes: 1_000_000_000n, capResetDay: 15 }
    const full = spareCapacity(capped, { ...sample, soldThisPeriodBytes: 1_000_000_000n }, wedNoon)
    assert.equal(full.spareBytesPerSec, 0)
    assert.equal(full.reason, 'monthly-cap-reached')
    const half = spareCapacity(capped, { ...sample, soldThisPeriodBytes: 400_000_000n }, wedNoon)
    assert.equal(half.remainingCapBytes, 600_000_000n)
    assert.equal(half.periodStartMs, Date.UTC(2025, 0, 14, 23, 0), '15 Jan 00:00 Berlin')
    assert.equal(half.periodEndMs, Date.UTC(2025, 1, 14, 23, 0), '15 Feb 00:00 Berlin')
    // 2 April 2025: the period started 15 March (UTC+1) and ends 15 April (UTC+2, after DST).
    const april = spareCapacity(capped, sample, Date.UTC(2025, 3, 2, 10, 0))
    assert.equal(april.periodStartMs, Date.UTC(2025, 2, 14, 23, 0))
    assert.equal(april.periodEndMs, Date.UTC(2025, 3, 14, 22, 0))
    // January before the reset day: the period started in December of the year before.
    assert.equal(spareCapacity(capped, sample, Date.UTC(2025, 0, 3, 10, 0)).periodStartMs, Date.UTC(2024, 11, 14, 23, 0))
  })

  it('reads the schedule and the cap period in the system\'s time zone when the policy names none', () => {
    const { timeZone: _, ...systemZone } = policy
    const weekdaysDay = { ...systemZone, schedule: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri'] as Array<'mon' | 'tue' | 'wed' | 'thu' | 'fri'>, start: '09:00', end: '17:00' }], monthlyCapBytes: 1_000_000_000n, capResetDay: 15 }
    const saved = process.env.TZ
    try {
      for (const zone of ['Europe/Berlin', 'America/New_York']) {
        process.env.TZ = zone
        const april = Date.UTC(2025, 3, 2, 10, 0)
        const system = spareCapacity(weekdaysDay, sample, april)
        const named = spareCapacity({ ...weekdaysDay, timeZone: zone }, sample, april)
        assert.deepEqual(system, named, zone)
      }
      // noon in Berlin is 06:00 in New York: inside the window only in Berlin
      process.env.TZ = 'Europe/Berlin'
      assert.equal(spareCapacity(weekdaysDay, sample, wedNoon).sharing, true)
      process.env.TZ = 'America/New_York'
      assert.equal(spareCapacity(weekdaysDay, sample, wedNoon).sharing, false)
    } finally {
      if (saved === undefined) delete process.env.TZ
      else process.env.TZ = saved
    }
  })

  it('rejects malformed policies', () => {
    assert.throws(() => spareCapacity({ ...policy, timeZone: 'Mars/Olympus' }, sample, wedNoon), InvalidSharingPolicyError)
    assert.throws(() => spareCapacity({ ...policy, capResetDay: 31 }, sample, wedNoon), InvalidSharingPolicyError)
    assert.throws(() => spareCapacity({ ...policy, reserveFraction: 1 }, sample, wedNoon), InvalidSharingPolicyError)
    assert.throws(() => spareCapacity({ ...policy, schedule: [{ days: ['wed'], start: '25:00', end: '26:00' }] }, sample, wedNoon), InvalidSharingPolicyError)
  })
})
