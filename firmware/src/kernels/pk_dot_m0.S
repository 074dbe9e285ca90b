// pk_dot4_rows: four output channels of one pixel, every kernel row, for the Cortex-M0+.
//
//   void pk_dot4_rows(const int8_t* x, const int8_t* w0, const int32_t* args, int32_t* acc);
//   args: k (weights per output channel), rows, row_len, row_stride (bytes between input rows)
//   acc[0..3] += sum over rows r, bytes i of x[r * row_stride + i] * w_c[r * row_len + i],
//   with w_c = w0 + c * k.
//
// All fourteen usable registers are assigned by hand: the eight operands that ldrsb and muls need in
// r0-r7, the four sums in r8-r11, row_len in r12 and row_stride in lr, so a byte costs 21 cycles for
// four multiply-accumulates and a kernel row adds 14. The index counts from -row_len up to zero, so
// the inner loop needs no compare.
    .syntax unified
    .cpu cortex-m0plus
    .thumb
    .section .text.pk_dot4_rows,"ax",%progbits
    .global pk_dot4_rows
    .type pk_dot4_rows, %function
    .thumb_func
pk_dot4_rows:
    push {r4-r7, lr}
    mov r4, r8
    mov r5, r9
    mov r6, r10
    mov r7, r11
    push {r4-r7}
    sub sp, #8              // [sp] rows left, [sp + 4] acc
    str r3, [sp, #4]
    ldr r4, [r3, #0]
    mov r8, r4
    ldr r4, [r3, #4]
    mov r9, r4
    ldr r4, [r3, #8]
    mov r10, r4
    ldr r4, [r3, #12]
    mov r11, r4
    ldr r4, [r2, #4]        // rows
    str r4, [sp, #0]
    ldr r4, [r2, #12]       // row_stride
    mov lr, r4
    ldr r3, [r2, #8]        // row_len
    mov r12, r3
    ldr r4, [r2, #0]        // k
    adds r0, r0, r3         // x + row_len: the index is negative
    adds r1, r1, r3         // channel 0's weights + row_len
    adds r5, r1, r4         // channel 1
    adds r6, r5, r4         // channel 2
    adds r4, r6, r4         // channel 3
    mov r2, r5
    mov r3, r6
.Lrow:
    mov r5, r12
    negs r5, r5
.Lbyte:
    ldrsb r6, [r0, r5]
    ldrsb r7, [r1, r5]
    muls r7, r6, r7
    add r8, r7
    ldrsb r7, [r2, r5]
    muls r7, r6, r7
    add r9, r7
    ldrsb r7, [r3, r5]
    muls r7, r6, r7
    add r10, r7
    ldrsb r7, [r4, r5]
    muls r7, r6, r7
    add r11, r7
    adds r5, r5, #1
    bne .Lbyte
    add r0, lr              // the next input row
    add r1, r12             // the weights continue where this row ended
    add r2, r12
    add r3, r12
    add r4, r12
    ldr r5, [sp, #0]
    subs r5, r5, #1
    str r5, [sp, #0]
    bne .Lrow
    ldr r3, [sp, #4]
    mov r4, r8
    str r4, [r3, #0]
    mov r4, r9
    str r4, [r3, #4]
    mov r4, r10
    str r4, [r3, #8]
    mov r4, r11
    str r4, [r3, #12]
    add sp, #8
    pop {r4-r7}
    mov r8, r4
    mov r9, r5
    mov r10, r6
    mov r11, r7
    pop {r4-r7, pc}
    .size pk_dot4_rows, .-pk_dot4_rows
