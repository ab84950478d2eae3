// Layer: the protocol every layer implements, with explicit forward and backward.
//
// Conventions (as in llm.c):
// - A layer owns its output tensor and its input-gradient tensor and reuses them every step.
// - `forward` in `.training` mode keeps what `backward` needs (a reference to its input,
//   masks, statistics). In `.inference` mode it keeps nothing for backward.
// - `backward` accumulates parameter gradients with `+=` into the flat gradient buffer,
//   and returns the input gradient only when asked: the lowest trainable layer is not.
import ThawKernels

/// How a layer runs its forward pass.
public enum LayerMode: Sendable, Equatable {
    /// Training: batch norm uses batch statistics and updates running ones, dropout is active,
    /// and the layer keeps what backward needs.
    case training
    /// Inference: batch norm uses running statistics, dropout is the identity, nothing is kept.
    case inference
}

/// A differentiable layer with explicit forward and backward passes.
///
/// Parameters are declared with `parameterSpecs` and bound to views into a
/// ``ParameterStore`` by `bind(parameters:state:)`; a layer never allocates its own weights.
public protocol Layer: AnyObject {
    /// The parameters this layer owns, with names local to the layer.
    var parameterSpecs: [ParameterSpec] { get }
    /// Non-trainable state this layer updates itself (for example batch-norm running statistics).
    var stateSpecs: [ParameterSpec] { get }
    /// Receives views into the store, in the order of `parameterSpecs` and `stateSpecs`.
    func bind(parameters: [ParameterView], state: [StateView])
    /// The output shape for an input shape (batch dimension included), or an error naming the mismatch.
    func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int]
    /// Computes the output for `input`. The returned tensor is owned by the layer.
    func forward(_ input: Tensor, mode: LayerMode) -> Tensor
    /// Accumulates parameter gradients from `outputGradient` and returns the input gradient
    /// when `computeInputGradient` is true, or nil otherwise.
    ///
    /// Valid only after a `.training` forward pass on the same batch.
    func backward(_ outputGradient: Tensor, computeInputGradient: Bool) -> Tensor?
    /// Layers nested inside this one, for traversal (reseeding dropout, counting work).
    var children: [any Layer] { get }
    /// The nested layers with the names their parameters are prefixed with (`query` in `query.weight`),
    /// so a model can find a layer by path (attaching adapters to named projections).
    var namedChildren: [(name: String, layer: any Layer)] { get }
    /// Makes inference fold each batch norm into the ``BatchNormFoldable`` child right before it, as
    /// a `Sequential` does from the start; layers that hold no such pair do nothing. Idempotent.
    func foldBatchNormsForInference()
    /// Makes inference run every batch norm on its own (to compare with the folded path). Idempotent.
    func unfoldBatchNorms()
}

extension Layer {
    /// No parameters by default.
    public var parameterSpecs: [ParameterSpec] { [] }
    /// No state by default.
    public var stateSpecs: [ParameterSpec] { [] }
    /// Nothing to bind by default.
    public func bind(parameters: [ParameterView], state: [StateView]) {}
    /// The named children's layers.
    public var children: [any Layer] { namedChildren.map(\.layer) }
    /// No children by default.
    public var namedChildren: [(name: String, layer: any Layer)] { [] }
    /// No batch norm to fold by default.
    public func foldBatchNormsForInference() {}
    /// No batch norm to unfold by default.
    public func unfoldBatchNorms() {}
}

/// A shape that a layer cannot accept, with the layer and the expected form.
public struct ShapeError: Error, CustomStringConvertible, Equatable {
    /// The layer (or path to it) that rejected the shape.
    public var layer: String
    /// The shape it was given.
    public var shape: [Int]
    /// What it expected instead.
    public var expected: String

    /// Creates a shape error.
    public init(layer: String, shape: [Int], expected: String) {
        self.layer = layer
        self.shape = shape
        self.expected = expected
    }

    /// A one-line explanation.
    public var description: String { "\(layer): got input shape \(shape), expected \(expected)" }
}

/// A layer that draws random numbers (dropout). The trainer reseeds every such layer before each
/// step from (seed, step, rank), so a resumed run draws exactly what the uninterrupted run drew.
public protocol RandomLayer: AnyObject {
    /// Restarts the layer's generator from `seed`.
    func reseed(_ seed: UInt64)
}
