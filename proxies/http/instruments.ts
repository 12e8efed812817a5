/**
 * The HTTP egress proxy's OpenTelemetry instruments, declared once as a table; the
 * server obtains them through ctx.meter (the runtime adds `membrane.proxy` = name).
 * Attributes stay low-cardinality: verdict, mode, check — never hosts or paths (those
 * are in the decision log).
 */
import type { Counter, Histogram, InstrumentSpec, Meter } from '../proxy.js';

export const HTTP_INSTRUMENTS = {
  requests: {
    name: 'membrane.http.requests',
    unit: '{request}',
    description: 'requests and tunnels decided, by verdict (allow, report, deny) and mode',
  },
  denied: {
    name: 'membrane.http.denied',
    unit: '{request}',
    description: 'refusals, by the check that refused (policy, address, inspect, limit.*, upstream, …)',
  },
  bytesUp: {
    name: 'membrane.http.bytes.up',
    unit: 'By',
    description: 'bytes sent to upstreams (bodies and tunnels)',
  },
  bytesDown: {
    name: 'membrane.http.bytes.down',
    unit: 'By',
    description: 'bytes received from upstreams (bodies and tunnels)',
  },
  duration: { name: 'membrane.http.request.duration', unit: 'ms', description: 'request or tunnel lifetime' },
} as const satisfies Record<string, InstrumentSpec>;

export interface HttpInstruments {
  readonly requests: Counter;
  readonly denied: Counter;
  readonly bytesUp: Counter;
  readonly bytesDown: Counter;
  readonly duration: Histogram;
}

export function httpInstruments(meter: Meter): HttpInstruments {
  return {
    requests: meter.counter(HTTP_INSTRUMENTS.requests),
    denied: meter.counter(HTTP_INSTRUMENTS.denied),
    bytesUp: meter.counter(HTTP_INSTRUMENTS.bytesUp),
    bytesDown: meter.counter(HTTP_INSTRUMENTS.bytesDown),
    duration: meter.histogram(HTTP_INSTRUMENTS.duration),
  };
}

const noop = { add() {}, record() {} };
export const noopMeter: Meter = { counter: () => noop, histogram: () => noop };
