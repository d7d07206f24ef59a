"""Small reference models used by the demo, the tests and the benchmarks (built with Keras 3)."""
from __future__ import annotations


def slide_mlp(num_classes: int = 3):
    """The model from the slides: 2 -> 16 -> 8 -> 3 with dropout."""
    import keras
    from keras import layers

    return keras.Sequential([
        keras.Input((2,)),
        layers.Dense(16, activation="relu"),
        layers.Dropout(0.2),
        layers.Dense(8, activation="relu"),
        layers.Dropout(0.2),
        layers.Dense(num_classes, activation="softmax"),
    ], name="slide_mlp")


def small_cnn(input_shape=(28, 28, 1), num_classes: int = 10, width: int = 32, head: str = "gap"):
    """A Fashion-MNIST CNN (Conv-BN-ReLU blocks).

    ``head="gap"`` (global average pooling, few parameters) needs ~10 epochs for 90% on Fashion-MNIST;
    ``head="flatten"`` (Flatten + Dropout + Dense, ~257k parameters at width 32) measured 90.3% after
    3 epochs at batch 128 (benchmarks/ptq.py uses it)."""
    import keras
    from keras import layers

    inp = keras.Input(input_shape)
    x = inp
    for i, filters in enumerate((width, width * 2)):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
        x = layers.MaxPooling2D(name=f"pool{i}")(x)
    x = layers.Conv2D(width * 2, 3, padding="same", activation="relu", name="conv2")(x)
    if head == "flatten":
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dropout(0.3, name="dropout")(x)
    else:
        x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(64, activation="relu", name="fc")(x)
    out = layers.Dense(num_classes, activation="softmax", name="logits")(x)
    return keras.Model(inp, out, name="small_cnn")


def mobilenet_v2_style(input_shape=(32, 32, 1), num_classes: int = 10, alpha: float = 0.35):
    """A MobileNetV2-style net: inverted residual blocks (expand 1x1, depthwise 3x3, project 1x1)
    with residual Adds, sized for 32x32 inputs."""
    import keras
    from keras import layers

    def ch(c):
        return max(8, int(c * alpha + 4) // 8 * 8)

    def block(x, out_c, stride, expand, idx):
        in_c = x.shape[-1]
        y = layers.Conv2D(in_c * expand, 1, use_bias=False, name=f"b{idx}_expand")(x)
        y = layers.BatchNormalization(name=f"b{idx}_expand_bn")(y)
        y = layers.ReLU(6.0, name=f"b{idx}_expand_relu")(y)
        y = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"b{idx}_dw")(y)
        y = layers.BatchNormalization(name=f"b{idx}_dw_bn")(y)
        y = layers.ReLU(6.0, name=f"b{idx}_dw_relu")(y)
        y = layers.Conv2D(out_c, 1, use_bias=False, name=f"b{idx}_project")(y)
        y = layers.BatchNormalization(name=f"b{idx}_project_bn")(y)
        if stride == 1 and in_c == out_c:
            y = layers.Add(name=f"b{idx}_add")([x, y])
        return y

    inp = keras.Input(input_shape)
    x = layers.Conv2D(ch(32), 3, strides=1, padding="same", use_bias=False, name="stem")(inp)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    cfg = [(16, 1, 1, 1), (24, 2, 6, 2), (32, 2, 6, 3), (64, 2, 6, 2), (96, 1, 6, 1)]
    idx = 0
    for c, stride0, expand, n in cfg:
        for i in range(n):
            x = block(x, ch(c), stride0 if i == 0 else 1, expand, idx)
            idx += 1
    x = layers.Conv2D(ch(320) * 2, 1, use_bias=False, name="head")(x)
    x = layers.BatchNormalization(name="head_bn")(x)
    x = layers.ReLU(6.0, name="head_relu")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    out = layers.Dense(num_classes, activation="softmax", name="logits")(x)
    return keras.Model(inp, out, name="mobilenet_v2_style")


def compile_classifier(model, lr: float = 1e-3):
    import keras

    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model
