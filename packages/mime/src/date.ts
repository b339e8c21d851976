/**
 * The Date: field (RFC 5322 §3.3, with the obsolete forms of §4.3: two- and
 * three-digit years, zone names, comments, missing seconds). IMAP's
 * SENTBEFORE/SENTON/SENTSINCE compare the date *as written*, disregarding
 * time and zone (RFC 3501 §6.4.4), so the calendar day comes out apart from
 * the instant.
 */

export interface HeaderDate {
  year: number;
  /** 1–12. */
  month: number;
  day: number;
  /** The instant, in milliseconds since the epoch (UTC). */
  time: number;
  /** The zone it was written in, in minutes east of UTC (-0000 and unknown zones: 0). */
  zone: number;
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
/** RFC 5322 §4.3 obsolete zones; military zones other than Z are treated as -0000 as the RFC advises. */
const ZONES: Record<string, number> = {
  ut: 0,
  gmt: 0,
  z: 0,
  est: -5 * 60,
  edt: -4 * 60,
  cst: -6 * 60,
  cdt: -5 * 60,
  mst: -7 * 60,
  mdt: -6 * 60,
  pst: -8 * 60,
  pdt: -7 * 60,
};

/** Parses a Date: value; null when it is not a date. Linear, bounded to the first 200 characters. */
export function parseHeaderDate(value: string): HeaderDate | null {
  const text = value
    .slice(0, 200)
    .replace(/\([^()]*\)/g, ' ')
    .replace(/,/g, ' ')
    .trim()
    .toLowerCase();
  const words = text.split(/\s+/);
  let k = 0;
  // An optional day of the week.
  if (words[k] && /^[a-z]{3,}$/.test(words[k]!) && !MONTHS.includes(words[k]!.slice(0, 3))) k++;
  const dayWord = words[k++];
  const monthWord = words[k++];
  const yearWord = words[k++];
  const timeWord = words[k++] ?? '';
  const zoneWord = words[k] ?? '';
  if (!dayWord || !monthWord || !yearWord || !/^\d{1,2}$/.test(dayWord) || !/^\d{2,4}$/.test(yearWord))
    return null;
  const month = MONTHS.indexOf(monthWord.slice(0, 3)) + 1;
  if (month === 0) return null;
  const day = Number(dayWord);
  let year = Number(yearWord);
  // RFC 5322 §4.3: two digits below 50 are 20xx, others 19xx; three digits add 1900.
  if (yearWord.length === 2) year += year < 50 ? 2000 : 1900;
  else if (yearWord.length === 3) year += 1900;
  if (day < 1 || day > 31) return null;
  const t = /^(\d{1,2}):(\d{2})(?::(\d{2}))?$/.exec(timeWord);
  const [h, m, s] = t ? [Number(t[1]), Number(t[2]), Number(t[3] ?? 0)] : [0, 0, 0];
  let offset = 0;
  const z = /^([+-])(\d{2})(\d{2})$/.exec(zoneWord);
  if (z) offset = (z[1] === '-' ? -1 : 1) * (Number(z[2]) * 60 + Number(z[3]));
  else if (zoneWord in ZONES) offset = ZONES[zoneWord]!;
  const time = Date.UTC(year, month - 1, day, h, m, s) - offset * 60_000;
  if (Number.isNaN(time)) return null;
  return { year, month, day, time, zone: offset };
}
