// RawMPI: the uninstrumented MPI_Allreduce that benchmarks compare Thaw's exchange against.
import ThawRun
import ThawTrainer
import CMPI

/// Direct MPI calls with no Thaw bookkeeping, used only as a benchmark baseline.
public enum RawMPI {
    /// One blocking in-place `MPI_Allreduce` (sum) of `buffer` over COMM_WORLD. Returns MPI's code.
    @discardableResult
    public static func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) -> Int32 {
        MPI_Allreduce(thaw_mpi_in_place(), buffer.baseAddress, Int32(buffer.count), thaw_mpi_float(), thaw_mpi_sum(), thaw_mpi_comm_world())
    }

    /// `MPI_Barrier` over COMM_WORLD. Returns MPI's code.
    @discardableResult
    public static func barrier() -> Int32 { MPI_Barrier(thaw_mpi_comm_world()) }
}
