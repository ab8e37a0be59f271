"""modules/sd_models.py of web UI 1.10.1, the part extensions meet: ``model_data``, whose ``lock`` is held
while the first checkpoint loads (SdModelData.get_sd_model; at start-up a thread of initialize.py asks for
shared.sd_model). The load runs inside sd_disable_initialization's patches, which replace torch's module
functions for every thread: InitializeOnMeta builds Linear/Conv2d/MultiheadAttention on the meta device and
makes ``torch.nn.Module.to`` return None. Written from the public source, not copied."""
import threading


class SdModelData:
    def __init__(self):
        self.sd_model = None
        self.loaded_sd_models = []
        self.was_loaded_at_least_once = False
        self.lock = threading.Lock()


model_data = SdModelData()
