/**
 * Spare uplink: what the node can sell right now. Pure: time and every measurement
 * are passed in; the wall clock is interpreted in the system's time zone through
 * `Date`, or through `Intl` in an explicitly given one.
 */
import { SparebandError } from '../protocol/errors.ts'

/** Raised when a sharing policy is malformed (bad time zone, window or fraction). */
export class InvalidSharingPolicyError extends SparebandError {
  constructor (message: string) {
    super('ERR_INVALID_SHARING_POLICY', message)
  }
}

/** Days of the week as `Intl` prints them in English. */
export const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const
/** A day of the week. */
export type Weekday = typeof WEEKDAYS[number]

/**
 * Hours of some days when sharing is allowed, in local time. `start`/`end` are
 * `HH:MM`; an `end` not after `start` runs past midnight into the next day (the
 * window belongs to the day it starts on); `00:00`–`24:00` is the whole day.
 */
export interface SharingWindow {
  days: Weekday[]
  start: string
  end: string
}

/** The operator's rules. */
export interface SharingPolicy {
  /** IANA time zone of the schedule and the cap period, e.g. `Europe/Berlin`; default: the system's. */
  timeZone?: string
  /** When sharing is allowed; null means always. */
  schedule: SharingWindow[] | null
  /** Most the buyers together may use, bytes per second; null means no limit. */
  bandwidthLimitBytesPerSec: number | null
  /** Most the buyers may use per cap period; null means no cap. */
  monthlyCapBytes: bigint | null
  /** Day of the month (1–28) at 00:00 local time when the cap period starts. */
  capResetDay: number
  /** Share of the capacity always kept for the owner, 0 ≤ f < 1 (e.g. 0.1). */
  reserveFraction: number
}

/** Measurements at one instant, for the busier direction of the uplink. */
export interface CapacitySample {
  /** Usable capacity of the uplink (configured or link speed); null when unknown. */
  capacityBytesPerSec: number | null
  /** Everything the uplink carries now, buyers included. */
  linkUseBytesPerSec: number
  /** What spareband's buyers use now (part of `linkUseBytesPerSec`). */
  soldUseBytesPerSec: number
  /** What buyers used since the current cap period started. */
  soldThisPeriodBytes: bigint
}

/** Why the spare capacity is what it is. */
export type SpareReason = 'available' | 'outside-schedule' | 'monthly-cap-reached' | 'link-busy' | 'limit-reached' | 'unknown-capacity'

/** The result of {@link spareCapacity}. */
export interface SpareCapacity {
  /** What more the buyers may use now, bytes per second (0 when not sharing). */
  spareBytesPerSec: number
  /** Whether the schedule and the cap allow sharing at all now. */
  sharing: boolean
  reason: SpareReason
  /** Start and end (exclusive) of the current cap period, ms since the epoch. */
  periodStartMs: number
  periodEndMs: number
  /** Bytes left in the cap period; null without a cap. */
  remainingCapBytes: bigint | null
}

interface LocalTime {
  year: number
  month: number
  day: number
  weekday: Weekday
  minuteOfDay: number
}

function localTime (ms: number, timeZone: string | undefined): LocalTime {
  if (timeZone === undefined) {
    // Date's local-time getters cost next to nothing; an Intl formatter maps ~6 MB of ICU data
    const d = new Date(ms)
    return { year: d.getFullYear(), month: d.getMonth() + 1, day: d.getDate(), weekday: WEEKDAYS[d.getDay()], minuteOfDay: d.getHours() * 60 + d.getMinutes() }
  }
  let parts: Intl.DateTimeFormatPart[]
  try {
    parts = new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', weekday: 'short', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric' }).formatToParts(ms)
  } catch {
    throw new InvalidSharingPolicyError(`timeZone must be an IANA time zone such as "Europe/Berlin", got ${JSON.stringify(timeZone)}`)
  }
  const get = (type: string): string => parts.find((p) => p.type === type)?.value ?? ''
  return {
    year: Number(get('year')),
    month: Number(get('month')),
    day: Number(get('day')),
    weekday: get('weekday').toLowerCase().slice(0, 3) as Weekday,
    minuteOfDay: Number(get('hour')) * 60 + Number(get('minute'))
  }
}

/** The instant (ms) of local midnight starting `year-month-day` in `timeZone` (month may overflow). */
function localMidnightMs (year: number, month: number, day: number, timeZone: string | undefined): number {
  const wall = Date.UTC(year, month - 1, day)
  let guess = wall
  // Two rounds settle the offset, also across a DST change.
  for (let i = 0; i < 2; i++) {
    const t = localTime(guess, timeZone)
    const seen = Date.UTC(t.year, t.month - 1, t.day) + t.minuteOfDay * 60_000
    guess += wall - seen
  }
  return guess
}

function minutes (hhmm: string, allow24: boolean): number {
  const m = /^(\d{2}):(\d{2})$/.exec(hhmm)
  const value = m === null ? NaN : Number(m[1]) * 60 + Number(m[2])
  if (m === null || Number(m[2]) > 59 || value > (allow24 ? 1440 : 1439)) {
    throw new InvalidSharingPolicyError(`schedule times must be HH:MM from 00:00 to ${allow24 ? '24:00' : '23:59'}, got ${JSON.stringify(hhmm)}`)
  }
  return value
}

/** Whether the schedule allows sharing at the given local time. */
function inSchedule (schedule: SharingWindow[], t: LocalTime): boolean {
  const today = WEEKDAYS.indexOf(t.weekday)
  const yesterday = WEEKDAYS[(today + 6) % 7]
  for (const w of schedule) {
    for (const d of w.days) {
      if (!WEEKDAYS.includes(d)) throw new InvalidSharingPolicyError(`schedule days must be among ${WEEKDAYS.join(', ')}, got ${JSON.stringify(d)}`)
    }
    const start = minutes(w.start, false)
    const end = minutes(w.end, true)
    if (end > start) {
      if (w.days.includes(t.weekday) && t.minuteOfDay >= start && t.minuteOfDay < end) return true
    } else {
      // Runs past midnight: the evening part today, the morning part for yesterday's window.
      if (w.days.includes(t.weekday) && t.minuteOfDay >= start) return true
      if (w.days.includes(yesterday) && t.minuteOfDay < end) return true
    }
  }
  return false
}

function assertPolicy (p: SharingPolicy): void {
  if (!Number.isInteger(p.capResetDay) || p.capResetDay < 1 || p.capResetDay > 28) {
    throw new InvalidSharingPolicyError(`capResetDay must be a day from 1 to 28, got ${p.capResetDay}`)
  }
  if (!(p.reserveFraction >= 0 && p.reserveFraction < 1)) {
    throw new InvalidSharingPolicyError(`reserveFraction must be at least 0 and below 1, got ${p.reserveFraction}`)
  }
  if (p.bandwidthLimitBytesPerSec !== null && !(p.bandwidthLimitBytesPerSec > 0)) {
    throw new InvalidSharingPolicyError(`bandwidthLimitBytesPerSec must be positive or null, got ${p.bandwidthLimitBytesPerSec}`)
  }
  if (p.monthlyCapBytes !== null && p.monthlyCapBytes < 0n) {
    throw new InvalidSharingPolicyError(`monthlyCapBytes must not be negative, got ${p.monthlyCapBytes}`)
  }
}

/**
 * Spare = min(usable capacity − current link use, bandwidth limit − current sold use),
 * where usable capacity = capacity × (1 − reserve); zero outside the schedule or once
 * the monthly cap is used up. With an unknown capacity only the bandwidth limit
 * bounds it; with neither, nothing is offered.
 */
export function spareCapacity (policy: SharingPolicy, sample: CapacitySample, nowMs: number): SpareCapacity {
  assertPolicy(policy)
  const t = localTime(nowMs, policy.timeZone)
  const periodMonth = t.day >= policy.capResetDay ? t.month : t.month - 1
  const periodStartMs = localMidnightMs(t.year, periodMonth, policy.capResetDay, policy.timeZone)
  const periodEndMs = localMidnightMs(t.year, periodMonth + 1, policy.capResetDay, policy.timeZone)
  const remainingCapBytes = policy.monthlyCapBytes === null ? null : (policy.monthlyCapBytes > sample.soldThisPeriodBytes ? policy.monthlyCapBytes - sample.soldThisPeriodBytes : 0n)
  const result = (spare: number, reason: SpareReason, sharing: boolean): SpareCapacity =>
    ({ spareBytesPerSec: Math.max(0, Math.floor(spare)), sharing, reason, periodStartMs, periodEndMs, remainingCapBytes })

  if (policy.schedule !== null && !inSchedule(policy.schedule, t)) return result(0, 'outside-schedule', false)
  if (remainingCapBytes === 0n) return result(0, 'monthly-cap-reached', false)

  const byLink = sample.capacityBytesPerSec === null ? Infinity : sample.capacityBytesPerSec * (1 - policy.reserveFraction) - sample.linkUseBytesPerSec
  const byLimit = policy.bandwidthLimitBytesPerSec === null ? Infinity : policy.bandwidthLimitBytesPerSec - sample.soldUseBytesPerSec
  if (byLink === Infinity && byLimit === Infinity) return result(0, 'unknown-capacity', true)
  const spare = Math.min(byLink, byLimit)
  if (spare <= 0) return result(0, byLink <= byLimit ? 'link-busy' : 'limit-reached', true)
  return result(spare, 'available', true)
}
