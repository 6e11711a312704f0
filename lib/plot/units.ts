/**
 * Byte units for axes and summaries: binary prefixes, as GPU memory is counted. The one
 * implementation lives with the memory ledger; plots use the same units and formatting.
 *
 * @module
 */

export { type ByteUnit, byteUnit, formatBytes } from "../gpu/ledger.ts";
