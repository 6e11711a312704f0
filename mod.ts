/**
 * qlab: run Llama-style models on WebGPU in FP16, INT8 (absmax, vector-wise, LLM.int8()) and
 * 4-bit NormalFloat, and measure what each format costs (GPU memory, speed) and loses
 * (perplexity, KL divergence, per-layer error).
 *
 * @example
 * ```ts ignore
 * import { generate, LlamaModel, loadTokenizer, requestGpu } from "./mod.ts";
 *
 * const gpu = await requestGpu();
 * const model = await LlamaModel.load("models/sotu-llama", { gpu });
 * const tokenizer = await loadTokenizer("models/sotu-llama");
 * const result = await generate(model, tokenizer, "The state of the Union is", {
 *   maxNewTokens: 32,
 *   onText: (text) => console.log(text),
 * });
 * console.log(result.decodeTokensPerSecond, gpu.ledger.peakBytes);
 * model.dispose();
 * ```
 *
 * @module
 */

// The GPU runtime
export {
  defaultGpu,
  Gpu,
  GpuLostError,
  type GpuOptions,
  type HeldSubmissions,
  requestGpu,
} from "./lib/gpu/device.ts";
export {
  formatBytes,
  type LedgerEntry,
  type LedgerSnapshot,
  MEMORY_CATEGORIES,
  type MemoryCategory,
  MemoryLedger,
} from "./lib/gpu/ledger.ts";
export { GpuTensor, type TensorDType, type TensorOptions } from "./lib/gpu/tensor.ts";
export {
  BindGroupCache,
  type BindGroupKey,
  type Binding,
  CommandBatch,
  type CommandBatchOptions,
  type DispatchTiming,
  grid,
  params,
  ParamWriter,
} from "./lib/gpu/batch.ts";
export type { Kernel, KernelSpec } from "./lib/gpu/kernel.ts";
export { f16BitsToF32, f32ToF16Bits, roundToF16 } from "./lib/gpu/f16.ts";

// Kernels
export {
  Fp16Linear,
  type Fp16LinearOptions,
  Fp16LinearStack,
  type Fp16LinearStackOptions,
  type Fp16Tuning,
  GEMM_OUTER_SPLIT_BELOW,
  type Int8Input,
  type Linear,
  type LinearEncodeOptions,
  type LinearStack,
  MAX_GEMV_ROWS,
  type StackedWeight,
} from "./lib/kernels/linear.ts";
export type { RowChunk } from "./lib/kernels/chunks.ts";
export { GEMM_SPREAD_BELOW } from "./lib/kernels/gemm_spread.ts";
export {
  QuantLinear,
  type QuantLinearFactory,
  quantLinearFactory,
  type QuantLinearFactoryOptions,
  type QuantLinearFormat,
  type QuantLinearOptions,
  type QuantLinearRequest,
  QuantLinearStack,
  type QuantLinearStackOptions,
  type QuantTuning,
} from "./lib/kernels/quant_linear.ts";
export {
  hadamard32,
  KV_CACHE_FORMATS,
  KV_CACHE_INFO,
  type KvCacheFormat,
  type KvCacheInfo,
  type KvCacheLayout,
  kvCacheLayout,
  kvRoundTrip,
  parseKvCacheFormat,
  turnedQueries,
} from "./lib/kernels/kv_cache.ts";

// Models
export {
  defaultShortPromptTokens,
  fp16Linear,
  type GreedyDecodeOptions,
  type GreedyDecodeResult,
  type LayerWeights,
  LINEAR_NAMES,
  type LinearFactory,
  type LinearName,
  type LinearRequest,
  linearShapes,
  LlamaModel,
  type LoadOptions,
  type LogitsWanted,
  type SampledDecodeOptions,
  type TokenPick,
  type Trace,
  TRACE_POINTS,
  type TracePoint,
} from "./lib/model/llama.ts";
export { generate, type GenerateOptions, type GenerateResult } from "./lib/model/generate.ts";
export {
  type HostWeight,
  layerLinearBytes,
  measureUploadBandwidth,
  planLayers,
  type StreamingOptions,
  type StreamingStats,
} from "./lib/model/streaming.ts";
export {
  chat,
  type ChatMessage,
  type ChatOptions,
  type ChatResult,
  type ChatTemplate,
  chatTemplateFromGguf,
  loadChatTemplate,
  renderChat,
  type RenderChatOptions,
} from "./lib/model/chat.ts";
export {
  exportLlama2c,
  type Llama2cEntry,
  type Llama2cExportMemory,
  llama2cExportMemory,
  type Llama2cExportOptions,
  type Llama2cExportResult,
  llama2cFileBytes,
  llama2cGroupSize,
  type Llama2cHeader,
  llama2cHeaderFor,
  llama2cLayout,
  Llama2cSource,
  parseLlama2cHeader,
} from "./lib/model/llama2c.ts";
export {
  Llama2cTokenizer,
  llama2cTokenizerBytes,
  type Llama2cTokenizerFile,
} from "./lib/model/llama2c_tokenizer.ts";
export {
  createStreamDecoder,
  type DecodeOptions,
  type EncodeOptions,
  loadTokenizer,
  type StreamDecoder,
  type Tokenizer,
} from "./lib/model/tokenizer.ts";
export {
  familyOf,
  type Llama3RopeScaling,
  type LlamaConfig,
  loadLlamaConfig,
  parseLlamaConfig,
  ropeInverseFrequencies,
} from "./lib/model/config.ts";
export {
  type BlockLinear,
  FAMILY_NAMES,
  type FamilyName,
  type ModelFamily,
  parseFamily,
  supportedArchitectures,
} from "./lib/model/family.ts";
export { parameterCount, PRESET_NAMES, presetConfig } from "./lib/model/presets.ts";
export { Checkpoint, type CheckpointTensorInfo, openCheckpoint } from "./lib/model/checkpoint.ts";
export {
  SafetensorsFile,
  type TensorInfo,
  type TensorToWrite,
  writeSafetensors,
} from "./lib/model/safetensors.ts";
export {
  firstNonFinite,
  openSafetensors,
  type OpenSafetensorsOptions,
} from "./lib/model/safetensors.ts";
export {
  checkUnusedTensors,
  companionClaim,
  llamaTensorClaims,
  llamaTensorNames,
  type TensorClaim,
  unusedTensors,
} from "./lib/model/unused_tensors.ts";
export { excerpt, parseJsonStrict, type StrictJsonOptions } from "./lib/model/json.ts";
export {
  type BnbQuantizationConfig,
  BnbWeights,
  parseBnbQuantizationConfig,
} from "./lib/model/bnb.ts";
export {
  prequantizedWeights,
  type QlabQuantizationConfig,
  QlabWeights,
  readQuantizationConfig,
} from "./lib/model/prequantized.ts";
export type { PrequantizedWeights } from "./lib/model/quantized_source.ts";
export {
  CHECKPOINT_FORMATS,
  type CheckpointFormat,
  type CheckpointReader,
  quantizationConfigFor,
  quantizeCheckpoint,
  type QuantizeCheckpointOptions,
  type QuantizeCheckpointResult,
  writeQuantizedSafetensors,
} from "./lib/model/quantize_checkpoint.ts";
export { resolveModelDir, type ResolveOptions } from "./lib/model/hub.ts";
export { createSampler, type SamplerOptions, seededRandom } from "./lib/model/sampling.ts";
export {
  acceptOrResample,
  adaptiveDraftLength,
  expectedRoundTokens,
  fastestDraftLength,
  type RoundCost,
  roundCostOf,
  sampleFrom,
  samplingDistribution,
  settledDraftLength,
  speculativeDecode,
  type SpeculativeModel,
  type SpeculativeOptions,
  type SpeculativeResult,
  type TimedGroup,
} from "./lib/model/speculative.ts";
export {
  generateSpeculative,
  type SpeculativeGenerateOptions,
  type SpeculativeGenerateResult,
} from "./lib/model/speculative_generate.ts";
export {
  type ActivationHook,
  type LayerWeights as ReferenceLayerWeights,
  loadReferenceWeights,
  ReferenceLlama,
  type ReferenceOptions,
  type ReferenceWeights,
} from "./lib/model/reference.ts";

// Quantization formats (CPU side)
export {
  bitsPerParameter,
  dequantize,
  FORMAT_INFO,
  type FormatInfo,
  matmulQuantized,
  packedBytes,
  packedBytesFor,
  QUANT_FORMATS,
  type QuantFormat,
  quantize,
  type QuantizedWeight,
  type QuantOptions,
} from "./lib/quant/formats.ts";
export { NF4_TABLE, type Nf4Weight } from "./lib/quant/nf4.ts";
export { matmulPerRow } from "./lib/quant/per_row.ts";
export type { Fp16Weight } from "./lib/quant/fp16.ts";
export type { Int8AbsmaxWeight } from "./lib/quant/int8_absmax.ts";
export type { Int8VectorwiseWeight } from "./lib/quant/int8_vectorwise.ts";
export type { Nf4DqWeight } from "./lib/quant/nf4_dq.ts";
export type { Int4Weight } from "./lib/quant/int4.ts";
export type { Q8_0Weight } from "./lib/quant/q8_0.ts";
export {
  dequantizeQ4_0,
  dequantizeQ4_1,
  dequantizeQ4K,
  dequantizeQ6K,
  matmulKQuant,
  Q4_0_TABLE,
  type Q4_0Weight,
  type Q4KWeight,
  type Q6KWeight,
  QK_K,
  quantizeQ4_0,
} from "./lib/quant/ggml.ts";
export { KQuantLinear, type KQuantLinearOptions } from "./lib/kernels/kquant_linear.ts";
export {
  GgufFile,
  ggufLlamaConfig,
  type GgufTensor,
  ggufTokenizerJson,
  hfTensorName,
  openGguf,
} from "./lib/model/gguf.ts";
export type { Blockwise4bit } from "./lib/quant/blockwise4.ts";
export { FP4_TABLE, type Fp4Weight } from "./lib/quant/fp4.ts";
export {
  findOutlierColumns,
  LLM_INT8_THRESHOLD,
  type LlmInt8Weight,
  type OutlierStats,
} from "./lib/quant/llm_int8.ts";
export {
  cosineSimilarity,
  meanAbsError,
  meanRelativeError,
  relativeFrobeniusError,
} from "./lib/quant/stats.ts";

// Evaluation
export {
  type LogitsModel,
  logProbability,
  logSumExp,
  perplexity,
  type PerplexityOptions,
  type PerplexityResult,
} from "./lib/eval/perplexity.ts";
export { compareLogits, klDivergence, type LogitsComparison } from "./lib/eval/divergence.ts";
export {
  type CategoryBytes,
  estimateMemory,
  estimateStreaming,
  type MemoryEstimate,
  type MemoryEstimateOptions,
  type StreamingEstimate,
} from "./lib/eval/memory.ts";
export {
  type AttentionError,
  attentionErrors,
  type AttentionInputs,
  attentionInputs,
  keyChannelAbsmax,
  kvCacheQuality,
  type KvQuality,
  type KvQualityMetrics,
  type KvQualityOptions,
  type KvQualityResult,
  type KvTreatment,
} from "./lib/eval/kv_cache.ts";
export { type KvCacheContents, readKvCache } from "./lib/model/kv_cache.ts";
export {
  compareFormats,
  type CompareOptions,
  type Comparison,
  type FormatResult,
} from "./lib/eval/compare.ts";
export {
  type BlockError,
  blockErrors,
  type ErrorStats,
  errorStats,
  type LinearError,
  linearErrors,
  linearOutputs,
} from "./lib/eval/layer_error.ts";
export {
  activationMagnitudes,
  type LayerOutliers,
  outlierStatistics,
} from "./lib/eval/outliers.ts";
export {
  blockSizeSweep,
  type BlockSizeSweepPoint,
  type SweepLayers,
  thresholdSweep,
  type ThresholdSweepPoint,
} from "./lib/eval/sweeps.ts";

// Plots: figures, Jupyter display, offline HTML reports
export {
  barFigure,
  type BarOptions,
  type BarSeries,
  type BlockSizePoint,
  blockSizeSweepFigure,
  type Cell,
  display,
  type Displayable,
  type DisplayOptions,
  displayTable,
  type Figure,
  JUPYTER_DISPLAY,
  klFrontier,
  type LayerErrorGrid,
  layerErrorGridsFigure,
  layerErrorHeatmapFigure,
  lineFigure,
  type LineOptions,
  type LineSeries,
  type MagnitudeSeries,
  memoryBarsFigure,
  type MemoryBarsOptions,
  type MemoryRow,
  type MimeBundle,
  outlierHistogramFigure,
  type OutlierHistogramOptions,
  outlierMagnitudeFigure,
  type OutlierMagnitudeOptions,
  type PlotLayout,
  type QualityRow,
  qualityVsBitsFigure,
  renderReport,
  type Report,
  type ReportSection,
  resetPlotlyInline,
  show,
  showTable,
  type Table,
  type ThresholdPoint,
  thresholdSweepFigure,
  type Trace as PlotTrace,
  writeReport,
} from "./lib/plot/mod.ts";
export {
  blockDriftFigure,
  comparisonLegend,
  comparisonMemoryFigure,
  comparisonQualityFigure,
  comparisonReport,
  comparisonTable,
  kernelTimeFigure,
  layerErrorFigure,
  layerErrorsFigure,
  outlierFigure,
  type ReportExtras,
  speedFigure,
} from "./lib/plot/comparison.ts";
