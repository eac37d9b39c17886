/* The single list of operators InferBooster knows: X(ENUM_SUFFIX, "OnnxOpType").
 * It yields the ib__op_id enum and the op-type lookup. An op's implementation lives in
 * one file under src/ops/ and registers an ib__op_def for its id (see ops/ops.h); an op
 * listed here without a definition is reported as unsupported. */
#ifndef IB_IR_OP_LIST_H
#define IB_IR_OP_LIST_H

#define IB_OP_LIST(X) \
    X(ABS, "Abs") \
    X(ACOS, "Acos") \
    X(ACOSH, "Acosh") \
    X(ADD, "Add") \
    X(AND, "And") \
    X(ARG_MAX, "ArgMax") \
    X(ARG_MIN, "ArgMin") \
    X(ASIN, "Asin") \
    X(ASINH, "Asinh") \
    X(ATAN, "Atan") \
    X(ATANH, "Atanh") \
    X(AVERAGE_POOL, "AveragePool") \
    X(BATCH_NORMALIZATION, "BatchNormalization") \
    X(BERNOULLI, "Bernoulli") \
    X(BIT_SHIFT, "BitShift") \
    X(BLACKMAN_WINDOW, "BlackmanWindow") \
    X(CAST, "Cast") \
    X(CAST_LIKE, "CastLike") \
    X(CEIL, "Ceil") \
    X(CELU, "Celu") \
    X(CLIP, "Clip") \
    X(COMPRESS, "Compress") \
    X(CONCAT, "Concat") \
    X(CONSTANT, "Constant") \
    X(CONSTANT_OF_SHAPE, "ConstantOfShape") \
    X(CONV, "Conv") \
    X(CONV_INTEGER, "ConvInteger") \
    X(CONV_TRANSPOSE, "ConvTranspose") \
    X(COS, "Cos") \
    X(COSH, "Cosh") \
    X(CUM_SUM, "CumSum") \
    X(DFT, "DFT") \
    X(DEPTH_TO_SPACE, "DepthToSpace") \
    X(DEQUANTIZE_LINEAR, "DequantizeLinear") \
    X(DET, "Det") \
    X(DIV, "Div") \
    X(DROPOUT, "Dropout") \
    X(DYNAMIC_QUANTIZE_LINEAR, "DynamicQuantizeLinear") \
    X(EINSUM, "Einsum") \
    X(ELU, "Elu") \
    X(EQUAL, "Equal") \
    X(ERF, "Erf") \
    X(EXP, "Exp") \
    X(EXPAND, "Expand") \
    X(EYE_LIKE, "EyeLike") \
    X(FLATTEN, "Flatten") \
    X(FLOOR, "Floor") \
    X(GRU, "GRU") \
    X(GATHER, "Gather") \
    X(GATHER_ELEMENTS, "GatherElements") \
    X(GATHER_ND, "GatherND") \
    X(GELU, "Gelu") \
    X(GEMM, "Gemm") \
    X(GLOBAL_AVERAGE_POOL, "GlobalAveragePool") \
    X(GLOBAL_LP_POOL, "GlobalLpPool") \
    X(GLOBAL_MAX_POOL, "GlobalMaxPool") \
    X(GREATER, "Greater") \
    X(GREATER_OR_EQUAL, "GreaterOrEqual") \
    X(GRID_SAMPLE, "GridSample") \
    X(HAMMING_WINDOW, "HammingWindow") \
    X(HANN_WINDOW, "HannWindow") \
    X(HARD_SIGMOID, "HardSigmoid") \
    X(HARD_SWISH, "HardSwish") \
    X(HARDMAX, "Hardmax") \
    X(IDENTITY, "Identity") \
    X(IF, "If") \
    X(INSTANCE_NORMALIZATION, "InstanceNormalization") \
    X(IS_INF, "IsInf") \
    X(IS_NA_N, "IsNaN") \
    X(LRN, "LRN") \
    X(LSTM, "LSTM") \
    X(LAYER_NORMALIZATION, "LayerNormalization") \
    X(LEAKY_RELU, "LeakyRelu") \
    X(LESS, "Less") \
    X(LESS_OR_EQUAL, "LessOrEqual") \
    X(LOG, "Log") \
    X(LOG_SOFTMAX, "LogSoftmax") \
    X(LOOP, "Loop") \
    X(LP_NORMALIZATION, "LpNormalization") \
    X(LP_POOL, "LpPool") \
    X(MAT_MUL, "MatMul") \
    X(MAT_MUL_INTEGER, "MatMulInteger") \
    X(MAX, "Max") \
    X(MAX_POOL, "MaxPool") \
    X(MAX_ROI_POOL, "MaxRoiPool") \
    X(MAX_UNPOOL, "MaxUnpool") \
    X(MEAN, "Mean") \
    X(MEAN_VARIANCE_NORMALIZATION, "MeanVarianceNormalization") \
    X(MEL_WEIGHT_MATRIX, "MelWeightMatrix") \
    X(MIN, "Min") \
    X(MISH, "Mish") \
    X(MOD, "Mod") \
    X(MUL, "Mul") \
    X(MULTINOMIAL, "Multinomial") \
    X(NEG, "Neg") \
    X(NEGATIVE_LOG_LIKELIHOOD_LOSS, "NegativeLogLikelihoodLoss") \
    X(NON_MAX_SUPPRESSION, "NonMaxSuppression") \
    X(NON_ZERO, "NonZero") \
    X(NOT, "Not") \
    X(ONE_HOT, "OneHot") \
    X(OR, "Or") \
    X(P_RELU, "PRelu") \
    X(PAD, "Pad") \
    X(POW, "Pow") \
    X(Q_LINEAR_CONV, "QLinearConv") \
    X(Q_LINEAR_MAT_MUL, "QLinearMatMul") \
    X(QUANTIZE_LINEAR, "QuantizeLinear") \
    X(RNN, "RNN") \
    X(RANDOM_NORMAL, "RandomNormal") \
    X(RANDOM_NORMAL_LIKE, "RandomNormalLike") \
    X(RANDOM_UNIFORM, "RandomUniform") \
    X(RANDOM_UNIFORM_LIKE, "RandomUniformLike") \
    X(RANGE, "Range") \
    X(RECIPROCAL, "Reciprocal") \
    X(REDUCE_L1, "ReduceL1") \
    X(REDUCE_L2, "ReduceL2") \
    X(REDUCE_LOG_SUM, "ReduceLogSum") \
    X(REDUCE_LOG_SUM_EXP, "ReduceLogSumExp") \
    X(REDUCE_MAX, "ReduceMax") \
    X(REDUCE_MEAN, "ReduceMean") \
    X(REDUCE_MIN, "ReduceMin") \
    X(REDUCE_PROD, "ReduceProd") \
    X(REDUCE_SUM, "ReduceSum") \
    X(REDUCE_SUM_SQUARE, "ReduceSumSquare") \
    X(RELU, "Relu") \
    X(RESHAPE, "Reshape") \
    X(RESIZE, "Resize") \
    X(REVERSE_SEQUENCE, "ReverseSequence") \
    X(ROI_ALIGN, "RoiAlign") \
    X(ROUND, "Round") \
    X(STFT, "STFT") \
    X(SCAN, "Scan") \
    X(SCATTER, "Scatter") \
    X(SCATTER_ELEMENTS, "ScatterElements") \
    X(SCATTER_ND, "ScatterND") \
    X(SELU, "Selu") \
    X(SHAPE, "Shape") \
    X(SHRINK, "Shrink") \
    X(SIGMOID, "Sigmoid") \
    X(SIGN, "Sign") \
    X(SIN, "Sin") \
    X(SINH, "Sinh") \
    X(SIZE, "Size") \
    X(SLICE, "Slice") \
    X(SOFTMAX, "Softmax") \
    X(SOFTMAX_CROSS_ENTROPY_LOSS, "SoftmaxCrossEntropyLoss") \
    X(SOFTPLUS, "Softplus") \
    X(SOFTSIGN, "Softsign") \
    X(SPACE_TO_DEPTH, "SpaceToDepth") \
    X(SPLIT, "Split") \
    X(SQRT, "Sqrt") \
    X(SQUEEZE, "Squeeze") \
    X(SUB, "Sub") \
    X(SUM, "Sum") \
    X(TAN, "Tan") \
    X(TANH, "Tanh") \
    X(THRESHOLDED_RELU, "ThresholdedRelu") \
    X(TILE, "Tile") \
    X(TOP_K, "TopK") \
    X(TRANSPOSE, "Transpose") \
    X(TRILU, "Trilu") \
    X(UNIQUE, "Unique") \
    X(UNSQUEEZE, "Unsqueeze") \
    X(UPSAMPLE, "Upsample") \
    X(WHERE, "Where") \
    X(XOR, "Xor") \
    /* end */

typedef enum ib__op_id {
    IB_OP_UNKNOWN = 0,
#define IB__OP_ENUM(id, name) IB_OP_##id,
    IB_OP_LIST(IB__OP_ENUM)
#undef IB__OP_ENUM
    IB_OP_COUNT
} ib__op_id;

/* IB_OP_UNKNOWN for an op type (default domain) that is not in the list. */
ib__op_id ib__op_lookup(const char *op_type);
const char *ib__op_name(ib__op_id op);

#endif /* IB_IR_OP_LIST_H */
