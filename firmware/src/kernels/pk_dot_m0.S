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

// r4-r11 and lr saved / restored around a function that uses all of them.
    .macro SAVE_ALL
    push {r4-r7, lr}
    mov r4, r8
    mov r5, r9
    mov r6, r10
    mov r7, r11
    push {r4-r7}
    .endm

    .macro RETURN_ALL
    pop {r4-r7}
    mov r8, r4
    mov r9, r5
    mov r10, r6
    mov r11, r7
    pop {r4-r7, pc}
    .endm

// One input byte x[r0 + r5] times the weights at r1-r4 (+ r5) of four channels into r8-r11.
    .macro BYTE4
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
    .endm
    .section .text.pk_dot4_rows,"ax",%progbits
    .global pk_dot4_rows
    .type pk_dot4_rows, %function
    .thumb_func
pk_dot4_rows:
    SAVE_ALL
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
    BYTE4
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
    RETURN_ALL
    .size pk_dot4_rows, .-pk_dot4_rows

// pk_span4: `count` interior pixels of one output row, four output channels each: the dot products
// as in pk_dot4_rows, then each sum requantized and stored, all without leaving assembly.
//
//   void pk_span4(const pk_span4_args* a, const int8_t* x, int8_t* o, int32_t count);
//
// pk_span4_args (pk_core.c, offsets checked there with static asserts):
//    0 w0   4 k   8 rows   12 row_len   16 row_stride   20 x_step   24 o_step
//   28 be[4]   44 ch: a pointer to four pk_span_fch, FCH_SIZE bytes each (a pk_span_ch, the CH_
//   offsets below, then REQF's fields), computed per call or a host record in flash
// Requantization as pk_out_fast with left shift 0 and right shift >= 1: a sum at or below lo_at
// gives lo; otherwise h = (sum * mult + 2^30) >> 31 from 16-bit halves, then the rounding shift
// right (midpoint away from zero) as (h + half - (h < 0)) >> right with half = 2^(right - 1), the
// offset, the clamp to hi. No clamp to lo: a sum above lo_at (a confirmed threshold, never INT32_MIN
// here) gives more than lo.
    .equ CH_LO_AT, 0
    .equ CH_MH, 4
    .equ CH_ML, 8
    .equ CH_RIGHT, 12
    .equ CH_HALF, 16
    .equ CH_OUT_OFF, 20
    .equ CH_LO, 24
    .equ CH_HI, 28
    .equ CH_SIZE, 32
    .macro REQ
    ldr r1, [r7, #CH_LO_AT]
    cmp r0, r1
    bgt 1f
    ldr r0, [r7, #CH_LO]
    b 9f
1:
    uxth r1, r0
    asrs r0, r0, #16
    ldr r2, [r7, #CH_MH]
    ldr r3, [r7, #CH_ML]
    movs r4, r1
    muls r4, r2, r4
    muls r1, r3, r1
    lsrs r1, r1, #16
    adds r4, r4, r1
    movs r1, #1
    lsls r1, r1, #14
    adds r4, r4, r1
    muls r2, r0, r2
    muls r3, r0, r3
    lsls r0, r4, #17
    lsrs r0, r0, #17
    adds r0, r0, r3
    asrs r0, r0, #15
    lsrs r4, r4, #15
    adds r0, r0, r4
    lsls r2, r2, #1
    adds r0, r0, r2
    asrs r1, r0, #31        // -1 when h < 0
    adds r0, r0, r1
    ldr r1, [r7, #CH_HALF]
    adds r0, r0, r1
    ldr r1, [r7, #CH_RIGHT]
    asrs r0, r1
    ldr r1, [r7, #CH_OUT_OFF]
    adds r0, r0, r1
    ldr r1, [r7, #CH_HI]
    cmp r0, r1
    ble 9f
    movs r0, r1
9:
    .endm


// REQF: REQ for the conv spans, r0 a sum without its folded bias (the spans start each sum at 0),
// r7 at a pk_span_fch (pk_core.c): its pk_span_ch first, so REQ reads it too, then QF_LIM .. QF_BE
// (a name of their own: .equ names are global to the file, and the depthwise frame's F_ are others).
// With be the folded bias and lo_rel = lo_at - be: a sum at or below lo_rel gives lo; a sum lo_rel + a
// with 0 < a <= lim (unsigned) takes pk_fit_of's exact short path,
// Khi + ((a * mh + ((a * ml + Pl) >> 16) + Klo) >> sh), which lim keeps at or below hi and on one side
// of zero (the sign's correction is in Klo); one above lo_rel + lim the full REQ of the sum plus be.
    .equ QF_LIM, 32
    .equ QF_PL, 36
    .equ QF_ML, 40
    .equ QF_MH, 44
    .equ QF_KLO, 48
    .equ QF_KHI, 52
    .equ QF_SH, 56
    .equ QF_LO_REL, 60
    .equ QF_BE, 64
    .equ FCH_SIZE, 68
    .macro REQF
    ldr r1, [r7, #QF_LO_REL]
    subs r1, r0, r1         // a = sum - lo_rel (flags: the signed compare of sum with lo_rel)
    ble 7f
    ldr r2, [r7, #QF_LIM]
    cmp r1, r2
    bhi 6f
    ldr r2, [r7, #QF_ML]
    muls r2, r1, r2
    ldr r3, [r7, #QF_PL]
    adds r2, r2, r3
    lsrs r0, r2, #16
    ldr r3, [r7, #QF_MH]
    muls r1, r3, r1
    adds r0, r0, r1
    ldr r3, [r7, #QF_KLO]
    adds r0, r0, r3
    ldr r3, [r7, #QF_SH]
    asrs r0, r3
    ldr r3, [r7, #QF_KHI]
    adds r0, r0, r3
    b 5f
6:
    ldr r1, [r7, #QF_BE]
    adds r0, r0, r1
    REQ
    b 5f
7:
    ldr r0, [r7, #CH_LO]
5:
    .endm

// The four sums of a group start at 0 (REQF adds nothing back but where it needs the bias).
    .macro ZERO_SUMS4
    movs r4, #0
    mov r8, r4
    mov r9, r4
    mov r10, r4
    mov r11, r4
    .endm

// pk_span4 / pk_span4w frame: [sp] args, [sp+4] x, [sp+8] o, [sp+12] pixels left, [sp+16] rows left.
    .macro SPAN_ENTER
    SAVE_ALL
    sub sp, #20
    str r0, [sp, #0]
    str r1, [sp, #4]
    str r2, [sp, #8]
    str r3, [sp, #12]
    .endm

// A pixel starts: the four sums at 0, the row count, row_stride in lr, row_len in r12 (and in r3);
// r7 = args.
    .macro PIXEL_START
    ldr r7, [sp, #0]
    ZERO_SUMS4
    ldr r4, [r7, #8]
    str r4, [sp, #16]
    ldr r4, [r7, #16]
    mov lr, r4
    ldr r3, [r7, #12]
    mov r12, r3
    .endm

// The four sums requantized and stored at o; leaves r6 = o.
    .macro STORE4
    ldr r7, [sp, #0]
    ldr r7, [r7, #44]       // args.ch
    ldr r6, [sp, #8]
    mov r0, r8
    REQF
    strb r0, [r6, #0]
    adds r7, #FCH_SIZE
    mov r0, r9
    REQF
    strb r0, [r6, #1]
    adds r7, #FCH_SIZE
    mov r0, r10
    REQF
    strb r0, [r6, #2]
    adds r7, #FCH_SIZE
    mov r0, r11
    REQF
    strb r0, [r6, #3]
    .endm

// o and x step on, one pixel fewer left (flags: Z when none is).
    .macro NEXT_PIXEL
    ldr r7, [sp, #0]
    ldr r4, [r7, #24]
    adds r6, r6, r4
    str r6, [sp, #8]
    ldr r4, [r7, #20]
    ldr r5, [sp, #4]
    adds r5, r5, r4
    str r5, [sp, #4]
    ldr r4, [sp, #12]
    subs r4, r4, #1
    str r4, [sp, #12]
    .endm

    .section .text.pk_span4,"ax",%progbits
    .global pk_span4
    .type pk_span4, %function
    .thumb_func
pk_span4:
    SPAN_ENTER
    cmp r3, #0
    bgt .Lpixel
    b .Ldone
.Lpixel:
    PIXEL_START
    ldr r4, [r7, #4]
    ldr r1, [r7, #0]
    ldr r0, [sp, #4]
    adds r0, r0, r3
    adds r1, r1, r3
    adds r5, r1, r4
    adds r6, r5, r4
    adds r4, r6, r4
    mov r2, r5
    mov r3, r6
.Lsrow:
    mov r5, r12
    negs r5, r5
.Lsbyte:
    BYTE4
    adds r5, r5, #1
    bne .Lsbyte
    add r0, lr
    add r1, r12
    add r2, r12
    add r3, r12
    add r4, r12
    ldr r5, [sp, #16]
    subs r5, r5, #1
    str r5, [sp, #16]
    bne .Lsrow
    // requantize and store the four sums
    STORE4
    // next pixel
    NEXT_PIXEL
    beq .Ldone
    b .Lpixel
.Ldone:
    add sp, #20
    RETURN_ALL
    .size pk_span4, .-pk_span4

// pk_span_dw3: `count` interior outputs of one channel of a 3x3 depthwise convolution.
//
//   void pk_span_dw3(const pk_dw3_args* a, const int8_t* x, int8_t* o, int32_t count);
//
// pk_dw3_args (pk_core.c, offsets checked there): 0 ch (as in pk_span4, so REQ reads it at r7 = a)
//   32 w[9] (int32)  68 be  72 x_step  76 o_step  80 c_n (bytes between taps of a row)  84 row_stride
// The loop's state stays in registers: r8 row_stride, r9 o, r10 the end of o, r11 x, r12 x_step,
// lr o_step.
    .macro TAP off, reg
    ldrsb r5, [r0, \reg]
    ldr r6, [r7, #\off]
    muls r6, r5, r6
    adds r4, r4, r6
    .endm

    .section .text.pk_span_dw3,"ax",%progbits
    .global pk_span_dw3
    .type pk_span_dw3, %function
    .thumb_func
pk_span_dw3:
    SAVE_ALL
    cmp r3, #0
    ble .Ldwdone
    movs r7, r0
    ldr r4, [r7, #84]
    mov r8, r4              // row_stride
    mov r9, r2              // o
    ldr r4, [r7, #76]
    mov lr, r4              // o_step
    muls r3, r4, r3
    adds r3, r3, r2
    mov r10, r3             // o + count * o_step
    mov r11, r1             // x
    ldr r4, [r7, #72]
    mov r12, r4             // x_step
.Ldwpixel:
    mov r0, r11
    movs r1, #0
    ldr r2, [r7, #80]
    lsls r3, r2, #1
    ldr r4, [r7, #68]
    TAP 32, r1
    TAP 36, r2
    TAP 40, r3
    add r0, r8
    TAP 44, r1
    TAP 48, r2
    TAP 52, r3
    add r0, r8
    TAP 56, r1
    TAP 60, r2
    TAP 64, r3
    mov r0, r4
    REQ
    mov r6, r9
    strb r0, [r6, #0]
    add r6, lr
    mov r9, r6
    add r11, r12
    cmp r6, r10
    bne .Ldwpixel
.Ldwdone:
    RETURN_ALL
    .size pk_span_dw3, .-pk_span_dw3

// pk_dw3_pairs_s1 / pk_dw3_pairs_s2: one channel of a 3x3 depthwise convolution of stride 1 / 2
// (both directions), every output interior, `rows` output rows of `pairs` pairs of outputs each.
//
//   void pk_dw3_pairs_s2(const pk_dw3p_args* a, const int8_t* x, int8_t* o);
//
// x: the top-left tap of the first output; o: the first output, its rows 2 * pairs outputs long
// (an even width: the next row starts where one ends). The two outputs of a pair share
// each weight (loaded once for both) and, at stride 2, a column of inputs. The arguments are copied
// into the frame (F_*, pk_dw3p_args in pk_core.c, offsets checked there), so the weights load
// sp-relative and r7 is free: r0 / r7 the pair's sums, r1 = 0, r2 = c_n, r3 = 2 c_n (tap offsets),
// r4 the tap pointer, r5 an input, r6 a weight; r8 lo_at, r9 o, r10 the end of the row's outputs,
// r11 x (the pair's top-left tap), r12 the folded bias, lr from a kernel row's end to the next row's start.
    .equ F_LO_AT, 0
    .equ F_MH, 4
    .equ F_ML, 8
    .equ F_RIGHT, 12
    .equ F_HALF, 16
    .equ F_OUT_OFF, 20
    .equ F_LO, 24
    .equ F_HI, 28
    .equ F_W, 32
    .equ F_BE, 68
    .equ F_CN, 72
    .equ F_ROW_ADV, 76
    .equ F_X_ROW_STEP, 80   // from the end of a row's last pair to the next row's first input
    .equ F_O_ROW_STEP, 84
    .equ F_PAIRS, 88
    .equ F_ROWS, 92
    .equ F_ROWS_LEFT, 96
    .equ F_SIZE, 104

// REQ on r0 with the channel's constants in the frame: temporaries r1, r4, r5, r6 (r7 and the tap
// offsets r2, r3 survive), lo_at in r8.
    .macro DWREQ
    cmp r0, r8
    bgt 1f
    ldr r0, [sp, #F_LO]
    b 9f
1:
    uxth r1, r0
    asrs r0, r0, #16
    ldr r5, [sp, #F_MH]
    ldr r6, [sp, #F_ML]
    movs r4, r1
    muls r4, r5, r4
    muls r1, r6, r1
    lsrs r1, r1, #16
    adds r4, r4, r1
    movs r1, #1
    lsls r1, r1, #14
    adds r4, r4, r1
    muls r5, r0, r5
    muls r6, r0, r6
    lsls r0, r4, #17
    lsrs r0, r0, #17
    adds r0, r0, r6
    asrs r0, r0, #15
    lsrs r4, r4, #15
    adds r0, r0, r4
    lsls r5, r5, #1
    adds r0, r0, r5
    asrs r1, r0, #31        // -1 when h < 0
    adds r0, r0, r1
    ldr r1, [sp, #F_HALF]
    adds r0, r0, r1
    ldr r1, [sp, #F_RIGHT]
    asrs r0, r1
    ldr r1, [sp, #F_OUT_OFF]
    adds r0, r0, r1
    ldr r1, [sp, #F_HI]
    cmp r0, r1
    ble 9f
    movs r0, r1
9:
    .endm

// DWREQ for a channel whose accumulators above lo_at are all in [0, 2^16) (pk_core.c's
// dw3_plane_channel checks it and sets the frame: F_MH / F_ML the halves of mult << left, F_HALF =
// K = 2^14 (+ 2^(right + 14) when right > 0), F_RIGHT = right + 15): the high multiply and the rounding
// shift as one, (v mh + (v ml >> 16) + K) >> (15 + right), unsigned, exact in 32 bits (the host test
// checks the identity against pk_requantize).
    .macro DWREQ16
    cmp r0, r8
    bgt 1f
    ldr r0, [sp, #F_LO]
    b 9f
1:
    ldr r5, [sp, #F_MH]
    movs r4, r0
    muls r4, r5, r4
    ldr r5, [sp, #F_ML]
    muls r0, r5, r0
    lsrs r0, r0, #16
    adds r0, r0, r4
    ldr r5, [sp, #F_HALF]
    adds r0, r0, r5
    ldr r5, [sp, #F_RIGHT]
    lsrs r0, r5
    ldr r5, [sp, #F_OUT_OFF]
    adds r0, r0, r5
    ldr r5, [sp, #F_HI]
    cmp r0, r5
    ble 9f
    movs r0, r5
9:
    .endm

// One product of the weight in r6 and the input at [r4 + \off] into \acc.
    .macro DWTAP off, acc
    ldrsb r5, [r4, \off]
    muls r5, r6, r5
    adds \acc, \acc, r5
    .endm

// One kernel row of both outputs of a pair, the weights at F_W + \w; r4 ends 2 c_n (stride 2) or
// c_n (stride 1) to the right of where it started.
    .macro DWROW stride, w
    ldr r6, [sp, #(F_W + \w)]
    .if \stride == 2
    DWTAP r1, r0            // A column 0
    DWTAP r3, r7            // B column 0 (2 c_n)
    ldr r6, [sp, #(F_W + \w + 4)]
    DWTAP r2, r0            // A column 1
    adds r4, r4, r3
    DWTAP r2, r7            // B column 1 (3 c_n)
    ldr r6, [sp, #(F_W + \w + 8)]
    DWTAP r1, r0            // A column 2 (2 c_n)
    DWTAP r3, r7            // B column 2 (4 c_n)
    .else
    DWTAP r1, r0            // A column 0
    DWTAP r2, r7            // B column 0 (c_n)
    ldr r6, [sp, #(F_W + \w + 4)]
    DWTAP r2, r0            // A column 1
    DWTAP r3, r7            // B column 1 (2 c_n)
    adds r4, r4, r2
    ldr r6, [sp, #(F_W + \w + 8)]
    DWTAP r2, r0            // A column 2 (2 c_n)
    DWTAP r3, r7            // B column 2 (3 c_n)
    .endif
    .endm

    .macro DW3_PAIRS name, stride, req
    .section .text.\name,"ax",%progbits
    .global \name
    .type \name, %function
    .thumb_func
\name:
    SAVE_ALL
    sub sp, #F_SIZE
    mov r11, r1
    mov r9, r2
    mov r7, sp
    ldm r0!, {r1-r6}
    stm r7!, {r1-r6}
    ldm r0!, {r1-r6}
    stm r7!, {r1-r6}
    ldm r0!, {r1-r6}
    stm r7!, {r1-r6}
    ldm r0!, {r1-r6}
    stm r7!, {r1-r6}
    ldr r1, [sp, #F_ROWS]
    ldr r5, [sp, #F_PAIRS]
    cmp r1, #0
    ble 2f
    cmp r5, #0
    bgt 3f
2:
    b .L\name\()_done
3:
    str r1, [sp, #F_ROWS_LEFT]
    ldr r0, [sp, #F_LO_AT]
    mov r8, r0
    ldr r0, [sp, #F_BE]
    mov r12, r0
    ldr r0, [sp, #F_ROW_ADV]
    mov lr, r0
    ldr r2, [sp, #F_CN]
    lsls r3, r2, #1
    muls r5, r3, r5
    add r5, r9
    mov r10, r5             // o + pairs * 2 c_n: the end of the first row
    movs r1, #0
.L\name\()_pair:
    mov r4, r11
    mov r0, r12
    mov r7, r12
    DWROW \stride, 0
    add r4, lr
    DWROW \stride, 12
    add r4, lr
    DWROW \stride, 24
    \req
    mov r4, r9
    strb r0, [r4]
    movs r0, r7
    \req
    mov r4, r9
    strb r0, [r4, r2]
    adds r4, r4, r3
    mov r9, r4
    .ifc \req,DWREQ
    movs r1, #0
    .endif
    add r11, r3
    .if \stride == 2
    add r11, r3
    .endif
    cmp r4, r10             // (the loop is too long for a conditional branch back)
    beq 4f
    b .L\name\()_pair
4:
    // The next row: o (r9) is already at its start (even widths), x skips to it, its end moves on.
    ldr r5, [sp, #F_X_ROW_STEP]
    add r11, r5
    ldr r5, [sp, #F_O_ROW_STEP]
    add r10, r5
    ldr r5, [sp, #F_ROWS_LEFT]
    subs r5, r5, #1
    str r5, [sp, #F_ROWS_LEFT]
    beq .L\name\()_done
    b .L\name\()_pair
.L\name\()_done:
    add sp, #F_SIZE
    RETURN_ALL
    .size \name, .-\name
    .endm

    DW3_PAIRS pk_dw3_pairs_s1, 1, DWREQ
    DW3_PAIRS pk_dw3_pairs_s2, 2, DWREQ
    DW3_PAIRS pk_dw3_pairs16_s1, 1, DWREQ16
    DW3_PAIRS pk_dw3_pairs16_s2, 2, DWREQ16

// pk_copy_up16: n bytes (a positive multiple of 16) from s to d >= s, both word-aligned, the last 16
// first, each 16 loaded before any is stored: d may overlap s (pk_pad_s8's in-place rows). 15 cycles
// per 16 bytes.
//
//   void pk_copy_up16(int8_t* d, const int8_t* s, int32_t n);
    .section .text.pk_copy_up16,"ax",%progbits
    .global pk_copy_up16
    .type pk_copy_up16, %function
    .thumb_func
pk_copy_up16:
    push {r4-r6}
    adds r0, r0, r2
    adds r1, r1, r2
    subs r0, r0, #16
    subs r1, r1, #16
1:
    ldm r1!, {r3-r6}
    stm r0!, {r3-r6}
    subs r0, r0, #32
    subs r1, r1, #32
    subs r2, r2, #16
    bne 1b
    pop {r4-r6}
    bx lr
    .size pk_copy_up16, .-pk_copy_up16

// pk_span4w: pk_span4 with the group's weights expanded to int32 and interleaved by channel
// (wx[i * 4 + c] = weight i of channel c), so one ldm fetches the four weights of an input byte.
// A kernel row of up to WIDE_UNROLL bytes runs straight through an unrolled block, entered
// row_len bodies before its end (one computed jump per row instead of a branch per byte): 16 cycles
// per byte for four multiply-accumulates. Longer rows take the loop (18 cycles per byte).
//
//   void pk_span4w(const pk_span4_args* a, const int8_t* x, int8_t* o, int32_t count);
//   (a->w0 points at wx, cast; the other fields as for pk_span4)
    .equ WIDE_UNROLL, 32
    .equ WIDE_BODY, 22      // bytes of code per unrolled byte (11 Thumb instructions)

// One input byte x[r0 + r5] times the four weights at r1 (then r1 += 16) into r8-r11; r5 += 1.
    .macro BYTEW
    ldrsb r6, [r0, r5]
    ldm r1!, {r2, r3, r4, r7}
    muls r2, r6, r2
    add r8, r2
    muls r3, r6, r3
    add r9, r3
    muls r4, r6, r4
    add r10, r4
    muls r7, r6, r7
    add r11, r7
    adds r5, r5, #1
    .endm

    .section .text.pk_span4w,"ax",%progbits
    .global pk_span4w
    .type pk_span4w, %function
    .thumb_func
pk_span4w:
    SAVE_ALL
    sub sp, #24             // the pk_span4 frame, and [sp+20] the unrolled block's entry
    str r0, [sp, #0]
    str r1, [sp, #4]
    str r2, [sp, #8]
    str r3, [sp, #12]
    ldr r4, [r0, #12]       // row_len
    cmp r4, #WIDE_UNROLL
    bls 3f
    b .Lwloop_start
3:
    movs r5, #WIDE_BODY
    muls r4, r5, r4
    ldr r5, .Lwend_addr
    b 1f
    .balign 4
.Lwend_addr:
    .word .Lwend
1:
    subs r5, r5, r4
    str r5, [sp, #20]
    ldr r4, [r0, #16]       // row_stride in lr, row_len in r12: neither STORE4 nor NEXT_PIXEL
    mov lr, r4              // touches them, so they are set once per call
    ldr r4, [r0, #12]
    mov r12, r4
    cmp r3, #0
    bgt .Lwupixel
    b .Lwdone
.Lwupixel:
    ldr r7, [sp, #0]        // the four sums at 0, the row count
    ZERO_SUMS4
    ldr r4, [r7, #8]
    str r4, [sp, #16]
    ldr r1, [r7, #0]        // wx
    ldr r0, [sp, #4]
    add r0, r12
.Lwurow:
    mov r5, r12
    negs r5, r5
    ldr r6, [sp, #20]
    mov pc, r6
    .rept WIDE_UNROLL
    BYTEW
    .endr
.Lwend:
    add r0, lr              // the next input row
    ldr r5, [sp, #16]
    subs r5, r5, #1
    str r5, [sp, #16]
    beq 2f
    b .Lwurow
2:
    STORE4
    NEXT_PIXEL
    beq 4f
    b .Lwupixel
4:
    b .Lwdone

.Lwloop_start:
    cmp r3, #0
    bgt .Lwpixel
    b .Lwdone
.Lwpixel:
    PIXEL_START
    ldr r1, [r7, #0]        // wx
    ldr r0, [sp, #4]
    adds r0, r0, r3
.Lwrow:
    mov r5, r12
    negs r5, r5
.Lwbyte:
    BYTEW
    bne .Lwbyte
    add r0, lr
    ldr r5, [sp, #16]
    subs r5, r5, #1
    str r5, [sp, #16]
    bne .Lwrow
    STORE4
    NEXT_PIXEL
    beq .Lwdone
    b .Lwpixel
.Lwdone:
    add sp, #24
    RETURN_ALL
    .size pk_span4w, .-pk_span4w

// pk_span8w / pk_span8x: two wide groups of four output channels side by side (eight channels), so
// each input byte is loaded once for eight multiply-accumulates, and a pixel's setup, rows and
// stepping are paid once for eight channels. Kernel rows of up to 32 bytes run through an unrolled
// block (as in pk_span4w) entered row_len bodies before its end; the block's bodies read the byte at
// an immediate offset, which frees the index register for a weight pointer.
//
//   void pk_span8w(const pk_span4_args* const ab[2], const int8_t* x, int8_t* o, int32_t count);
//   void pk_span8x(const void* const ab[3], const int8_t* x, int8_t* o, int32_t count);
//   ab[0]: the first group (channels o[0..3]), its rows, row_len (<= 32), row_stride, x_step and
//   o_step serve both; ab[1]: the second group (o[4..7]), its ch. pk_span8w reads each group's
//   weights at its w0 (two streams, four words a byte each); pk_span8x reads the eight weights of a
//   byte as one stream at ab[2] (the host's pair layout, pk_conv_params::wx8): three loads of three,
//   three and two words instead of four of two.
// Sums: r8-r11 the first group's, r12, lr, r4, r7 the second's; r1 (and r5 in pk_span8w) the weights.
    .equ SPAN8_BODY, 44     // bytes of code per unrolled byte in pk_span8w (22 Thumb instructions)
    .equ SPAN8X_BODY, 42    // in pk_span8x (21)

    .macro BYTE8 off
    ldrb r6, [r0, #\off]
    sxtb r6, r6
    ldm r1!, {r2, r3}
    muls r2, r6, r2
    add r8, r2
    muls r3, r6, r3
    add r9, r3
    ldm r1!, {r2, r3}
    muls r2, r6, r2
    add r10, r2
    muls r3, r6, r3
    add r11, r3
    ldm r5!, {r2, r3}
    muls r2, r6, r2
    add r12, r2
    muls r3, r6, r3
    add lr, r3
    ldm r5!, {r2, r3}
    muls r2, r6, r2
    adds r4, r4, r2
    muls r3, r6, r3
    adds r7, r7, r3
    .endm

    .macro BYTE8X off
    ldrb r6, [r0, #\off]
    sxtb r6, r6
    ldm r1!, {r2, r3, r5}
    muls r2, r6, r2
    add r8, r2
    muls r3, r6, r3
    add r9, r3
    muls r5, r6, r5
    add r10, r5
    ldm r1!, {r2, r3, r5}
    muls r2, r6, r2
    add r11, r2
    muls r3, r6, r3
    add r12, r3
    muls r5, r6, r5
    add lr, r5
    ldm r1!, {r2, r3}
    muls r2, r6, r2
    adds r4, r4, r2
    muls r3, r6, r3
    adds r7, r7, r3
    .endm

// The weight streams into the frame at a call's start (r0 = ab, r7 = ab[0], r6 = ab[1]), and into
// r1 (and r5) at a pixel's start.
    .macro W8_STREAMS_SET
    ldr r4, [r7, #0]
    str r4, [sp, #S8_W1]
    ldr r4, [r6, #0]
    str r4, [sp, #S8_W2]
    .endm
    .macro W8_STREAMS
    ldr r1, [sp, #S8_W1]
    ldr r5, [sp, #S8_W2]
    .endm
    .macro W8X_STREAM_SET
    ldr r4, [r0, #8]
    str r4, [sp, #S8_W1]
    .endm
    .macro W8X_STREAM
    ldr r1, [sp, #S8_W1]
    .endm

// pk_span8w / pk_span8x frame: [sp] ab, [sp+4] x + row_len - 32 (the unrolled block's base), [sp+8] o,
// [sp+12] pixels left, [sp+16] rows left, [sp+20] the block's entry, [sp+24] row_len - 32,
// [sp+28] row_stride, [sp+32..36] two sums, then what every pixel reads, copied once per call:
    .equ S8_ROWS, 40
    .equ S8_W1, 44          // the first weight stream (pk_span8x: the only one)
    .equ S8_W2, 48          // pk_span8w: the second group's
    .equ S8_CH1, 52         // the two groups' requantization (ab[0]->ch, ab[1]->ch)
    .equ S8_CH2, 56
    .equ S8_X_STEP, 60
    .equ S8_O_STEP, 64
    .equ S8_FRAME, 72
    .macro SPAN8 name, body, body_size, streams_set, streams
    .section .text.\name,"ax",%progbits
    .global \name
    .type \name, %function
    .thumb_func
\name:
    SAVE_ALL
    sub sp, #S8_FRAME
    str r0, [sp, #0]
    str r2, [sp, #8]
    str r3, [sp, #12]
    ldr r7, [r0, #0]
    ldr r6, [r0, #4]
    \streams_set
    ldr r4, [r7, #8]
    str r4, [sp, #S8_ROWS]
    ldr r4, [r7, #20]
    str r4, [sp, #S8_X_STEP]
    ldr r4, [r7, #24]
    str r4, [sp, #S8_O_STEP]
    ldr r4, [r7, #44]
    str r4, [sp, #S8_CH1]
    ldr r4, [r6, #44]
    str r4, [sp, #S8_CH2]
    ldr r4, [r7, #12]       // row_len
    movs r5, #\body_size
    muls r5, r4, r5
    ldr r6, .L\name\()_end_addr
    b 1f
    .balign 4
.L\name\()_end_addr:
    .word .L\name\()_end
1:
    subs r6, r6, r5
    str r6, [sp, #20]
    subs r4, #32
    str r4, [sp, #24]
    adds r1, r1, r4
    str r1, [sp, #4]
    ldr r4, [r7, #16]
    str r4, [sp, #28]
    cmp r3, #0
    bgt .L\name\()_pixel
    add sp, #S8_FRAME
    RETURN_ALL
.L\name\()_pixel:
    \streams
    ldr r2, [sp, #S8_ROWS]
    str r2, [sp, #16]       // rows
    movs r4, #0             // the eight sums at 0
    mov r8, r4
    mov r9, r4
    mov r10, r4
    mov r11, r4
    mov r12, r4
    mov lr, r4
    movs r7, #0
    ldr r0, [sp, #4]
.L\name\()_row:
    ldr r6, [sp, #20]
    mov pc, r6
    .set pk_b8, 0
    .rept 32
    \body pk_b8
    .set pk_b8, pk_b8 + 1
    .endr
.L\name\()_end:
    ldr r6, [sp, #28]
    adds r0, r0, r6         // the next input row
    ldr r6, [sp, #16]
    subs r6, r6, #1
    str r6, [sp, #16]
    beq 2f
    b .L\name\()_row
2:
    str r4, [sp, #32]
    str r7, [sp, #36]
    ldr r7, [sp, #S8_CH1]   // the first group's ch
    ldr r6, [sp, #8]
    mov r0, r8
    REQF
    strb r0, [r6, #0]
    adds r7, #FCH_SIZE
    mov r0, r9
    REQF
    strb r0, [r6, #1]
    adds r7, #FCH_SIZE
    mov r0, r10
    REQF
    strb r0, [r6, #2]
    adds r7, #FCH_SIZE
    mov r0, r11
    REQF
    strb r0, [r6, #3]
    ldr r7, [sp, #S8_CH2]   // the second group's ch
    mov r0, r12
    REQF
    strb r0, [r6, #4]
    adds r7, #FCH_SIZE
    mov r0, lr
    REQF
    strb r0, [r6, #5]
    adds r7, #FCH_SIZE
    ldr r0, [sp, #32]
    REQF
    strb r0, [r6, #6]
    adds r7, #FCH_SIZE
    ldr r0, [sp, #36]
    REQF
    strb r0, [r6, #7]
    ldr r4, [sp, #S8_O_STEP]
    adds r6, r6, r4
    str r6, [sp, #8]
    ldr r4, [sp, #S8_X_STEP]
    ldr r5, [sp, #4]
    adds r5, r5, r4
    str r5, [sp, #4]
    ldr r4, [sp, #12]
    subs r4, r4, #1
    str r4, [sp, #12]
    beq .L\name\()_done
    bl .L\name\()_pixel             // a branch back beyond b's reach (lr is free here)
.L\name\()_done:
    add sp, #S8_FRAME
    RETURN_ALL
    .size \name, .-\name
    .endm

    SPAN8 pk_span8w, BYTE8, SPAN8_BODY, W8_STREAMS_SET, W8_STREAMS
    SPAN8 pk_span8x, BYTE8X, SPAN8X_BODY, W8X_STREAM_SET, W8X_STREAM
