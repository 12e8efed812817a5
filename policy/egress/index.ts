/**
 * The egress policy evaluator's public surface: what the HTTP proxy, the runtime and the CLI
 * use. Everything here is pure (no I/O); loading referenced files is the caller's job
 * (egressPolicyFiles lists them, compileEgressPolicy takes their contents).
 */
export {
  type AddressClassification,
  type AddressPattern,
  classifyAddress,
  parseAddressPattern,
  parseIp,
} from './address.js';
export { checkEgress, type EgressCheck, type EgressCheckInput, parseEgressUrl } from './check-egress.js';
export { type NormalisedHost, normaliseHost } from './host.js';
export { decisionLine, type EgressDecisionRecord } from './record.js';
export {
  type CompiledEgressPolicy,
  compileEgressPolicy,
  compilePathGlob,
  DEFAULT_ALLOW_PORTS,
  decideAddress,
  decideRequest,
  type EgressPolicyFileContents,
  normalisePath,
  type PathGlob,
} from './rules.js';
export {
  type EgressAllowRule,
  type EgressDenyRule,
  EgressErrorCode,
  type EgressLimits,
  type EgressPolicy,
  type EgressPolicyInput,
  EgressPolicySchema,
  egressIssuesOf,
  egressPolicyError,
  egressPolicyFiles,
  LIMIT_DEFAULTS,
  mapEgressPolicyPaths,
  parseEgressPolicy,
  validateEgressPolicy,
} from './schema.js';
export type * from './types.js';
