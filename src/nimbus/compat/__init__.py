"""Compatibility APIs: other platforms' protocols, translated onto Nimbus's services.

- :mod:`nimbus.compat.sigv4`: AWS Signature Version 4, verified (and presigned) here;
- :mod:`nimbus.compat.lambda_api`: the AWS Lambda REST API subset boto3 and the AWS CLI
  use, served beside ``/v1`` on the same port (``/2015-03-31/functions/...``);
- :mod:`nimbus.compat.lambda_ops`: its operations, and :mod:`nimbus.compat.lambda_input`,
  how their request bodies are read;
- :mod:`nimbus.compat.shapes`: Nimbus objects and errors in the shapes botocore expects;
- :mod:`nimbus.compat.tc3`: Tencent Cloud's TC3-HMAC-SHA256 signatures, verified here;
- :mod:`nimbus.compat.scf_api`: Tencent SCF's API 3.0 subset ``tencentcloud-sdk-python-scf``
  uses, served at ``/`` (``X-TC-Action``); :mod:`nimbus.compat.scf_ops`, its actions;
  :mod:`nimbus.compat.scf_shapes`, Nimbus objects and errors in SCF's shapes.

These modules hold no logic of their own about functions: every operation is a call
to the same services ``/v1`` uses (``platform.functions``, ``platform.versions``,
``platform.dispatcher``, ``platform.events``).
"""
