/** Date-parts (RFC 5260 §4.2) and zones (RFC 5260 §4.1) for the date and currentdate tests. */
import { SieveRuntimeError } from './errors.ts';

/** A date-part (RFC 5260 §4.2) of an instant seen in a zone (minutes east of UTC). */
export function datePart(time: number, zone: number, part: string): string {
  const d = new Date(time + zone * 60_000);
  const two = (n: number) => String(n).padStart(2, '0');
  const date = `${String(d.getUTCFullYear()).padStart(4, '0')}-${two(d.getUTCMonth() + 1)}-${two(d.getUTCDate())}`;
  const clock = `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())}`;
  const sign = zone < 0 ? '-' : '+';
  const z = `${sign}${two(Math.floor(Math.abs(zone) / 60))}${two(Math.abs(zone) % 60)}`;
  switch (part) {
    case 'year':
      return date.slice(0, 4);
    case 'month':
      return date.slice(5, 7);
    case 'day':
      return date.slice(8, 10);
    case 'date':
      return date;
    // Modified Julian Day: days since 1858-11-17.
    case 'julian':
      return String(Math.floor((time + zone * 60_000) / 86_400_000) + 40_587);
    case 'hour':
      return clock.slice(0, 2);
    case 'minute':
      return clock.slice(3, 5);
    case 'second':
      return clock.slice(6, 8);
    case 'time':
      return clock;
    case 'iso8601':
      return `${date}T${clock}${z.slice(0, 3)}:${z.slice(3)}`;
    case 'std11': {
      const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
      const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
      return `${days[d.getUTCDay()]}, ${two(d.getUTCDate())} ${months[d.getUTCMonth()]} ${d.getUTCFullYear()} ${clock} ${z}`;
    }
    case 'zone':
      return z;
    case 'weekday':
      return String(d.getUTCDay());
    default:
      throw new SieveRuntimeError(`unknown date-part "${part}"`);
  }
}

export const zoneOf = (z: string): number => {
  const m = /^([+-])(\d{2})(\d{2})$/.exec(z);
  if (!m) throw new SieveRuntimeError(`not a zone: "${z}"`);
  return (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]));
};
