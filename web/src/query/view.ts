// view.ts: the time range and step a query page's state asks for.
import type { QueryState } from '../url';
import { parseDuration, parseTime, defaultStep } from '../time';

export interface View {
  rangeSec: number; // NaN when invalid
  endSec: number; // NaN for now
  stepSec: number; // NaN when invalid
  badRange: boolean;
  badEnd: boolean;
  badStep: boolean;
}

/** view reads the range, end and step inputs (end and step as typed, which may lag the URL). */
export function view(range: string, endInput: string, stepInput: string): View {
  const rangeSec = parseDuration(range);
  const endSec = endInput ? parseTime(endInput) : NaN;
  const stepSec = stepInput ? parseDuration(stepInput) : defaultStep(rangeSec);
  return { rangeSec, endSec, stepSec, badRange: !(rangeSec > 0), badEnd: endInput !== '' && isNaN(endSec), badStep: !(stepSec > 0) };
}

/** graphRange is the [start, end] (Unix seconds) of a graph at now (ms). */
export function graphRange(v: View, now: number): [number, number] {
  const end = isNaN(v.endSec) ? Math.floor(now / 1000) : v.endSec;
  return [end - v.rangeSec, end];
}

/** eventsRange is the [from, to] (Unix seconds) the change windows are read for. */
export function eventsRange(v: View, now: number): [number, number] {
  const end = isNaN(v.endSec) ? now / 1000 : v.endSec;
  return [end - v.rangeSec, end];
}

/** runs tells whether the state asks for a query to run. */
export function runs(st: QueryState, v: View): boolean {
  return !!st.expr.trim() && !v.badRange && !v.badEnd && !v.badStep && st.tab !== 'explain';
}
